"""PyErgon's `models` package: its record types, statuses and retry policy."""

from __future__ import annotations

from ..core import (Invocation, InvocationStatus, RetryableError, RetryPolicy, ScheduledFlow, SignalInfo,
                    TaskStatus, TimerInfo)

__all__ = ["Invocation", "InvocationStatus", "TaskStatus", "ScheduledFlow", "RetryPolicy", "RetryableError",
           "TimerInfo", "SignalInfo"]
