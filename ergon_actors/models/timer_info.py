"""PyErgon's module path of TimerInfo."""

from ..core import TimerInfo

__all__ = ["TimerInfo"]
