"""PyErgon's module path of Invocation."""

from __future__ import annotations

from ..core import Invocation

__all__ = ["Invocation"]
