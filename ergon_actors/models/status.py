"""PyErgon's module path of InvocationStatus and TaskStatus."""

from __future__ import annotations

from ..core import InvocationStatus, TaskStatus

__all__ = ["InvocationStatus", "TaskStatus"]
