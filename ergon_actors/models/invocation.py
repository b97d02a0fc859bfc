"""PyErgon's module path of Invocation."""

from ..core import Invocation

__all__ = ["Invocation"]
