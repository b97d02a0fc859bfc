"""PyErgon's module path of TimerInfo."""

from __future__ import annotations

from ..core import TimerInfo

__all__ = ["TimerInfo"]
