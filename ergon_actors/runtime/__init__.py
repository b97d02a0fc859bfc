"""The actor runtime: supervisor, journal actor, worker actors and the journal client."""

from __future__ import annotations

from .client import JournalClient
from .serve import serve
from .snapshot import ActorInfo, Snapshot
from .supervisor import Supervisor

__all__ = ["Supervisor", "serve", "Snapshot", "ActorInfo", "JournalClient"]
