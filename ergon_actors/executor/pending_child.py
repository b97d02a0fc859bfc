"""PyErgon's module path of PendingChild (`self.invoke(child)` returns one)."""

from .child import PendingChild

__all__ = ["PendingChild"]
