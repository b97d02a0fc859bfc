"""PyErgon's module path of ScheduledFlow."""

from ..core import ScheduledFlow

__all__ = ["ScheduledFlow"]
