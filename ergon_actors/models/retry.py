"""PyErgon's module path of RetryPolicy and RetryableError."""

from __future__ import annotations

from ..core import RetryPolicy, RetryableError

__all__ = ["RetryPolicy", "RetryableError"]
