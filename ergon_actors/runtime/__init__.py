"""The actor runtime: supervisor, journal actor, worker actors and the journal client."""

from .client import JournalClient
from .supervisor import ActorInfo, Supervisor, SupervisorStatistics

__all__ = ["Supervisor", "SupervisorStatistics", "ActorInfo", "JournalClient"]
