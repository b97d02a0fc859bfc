"""PyErgon's module path of ScheduledFlow."""

from __future__ import annotations

from ..core import ScheduledFlow

__all__ = ["ScheduledFlow"]
