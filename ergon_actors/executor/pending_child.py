"""PyErgon's module path of PendingChild (`self.invoke(child)` returns one)."""

from __future__ import annotations

from .child import PendingChild

__all__ = ["PendingChild"]
