"""PyErgon's module path of complete_child_flow."""

from __future__ import annotations

from .pyergon_handlers import complete_child_flow

__all__ = ["complete_child_flow"]
