"""PyErgon's module path of RetryPolicy and RetryableError."""

from ..core import RetryPolicy, RetryableError

__all__ = ["RetryPolicy", "RetryableError"]
