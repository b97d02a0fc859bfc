"""PyErgon's module path of Executor."""

from .execution import Executor

__all__ = ["Executor"]
