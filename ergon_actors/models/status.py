"""PyErgon's module path of InvocationStatus and TaskStatus."""

from ..core import InvocationStatus, TaskStatus

__all__ = ["InvocationStatus", "TaskStatus"]
