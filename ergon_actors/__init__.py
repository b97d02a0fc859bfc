"""ergon_actors: durable flows of steps on an actor-model multiprocess runtime."""

from __future__ import annotations

import logging

from .core import (FlowStatus, Invocation, InvocationStatus, RetryableError, RetryPolicy, ScheduledFlow,
                   TaskStatus)
from .decorators import flow, flow_type, step
from .errors import (ChildFlowError, ConfigError, ErgonError, FencedError, FlowCancelledError,
                     FlowDefinitionError, FlowFailedError, FlowNotFoundError, FlowTimeoutError,
                     NondeterminismError, PoisonFlowError, SerializationError, SignalTimeoutError,
                     StepTimeoutError, StoreError, TimeoutExpired, UnknownFlowTypeError)
from .executor import (Completed, DeferredRegistry, Executor, InMemorySignalSource, Outcome, Scheduler,
                       Suspended, SuspendReason, Worker, WorkerHandle, await_external_signal,
                       schedule_timer, schedule_timer_named, sleep)
from .storage import ExecutionLog, InMemoryExecutionLog, SqliteExecutionLog, open_store

__version__ = "0.1.0"

__all__ = [
    "flow", "flow_type", "step",
    "Executor", "Outcome", "Completed", "Suspended", "SuspendReason", "Scheduler", "Worker", "WorkerHandle",
    "sleep", "schedule_timer", "schedule_timer_named", "await_external_signal", "InMemorySignalSource",
    "DeferredRegistry",
    "ExecutionLog", "InMemoryExecutionLog", "SqliteExecutionLog", "open_store",
    "FlowStatus", "TaskStatus", "RetryPolicy", "RetryableError", "Invocation", "InvocationStatus",
    "ScheduledFlow",
    "ErgonError", "ConfigError", "FencedError", "FlowDefinitionError", "FlowFailedError",
    "FlowNotFoundError", "NondeterminismError", "SerializationError", "StoreError",
    "TimeoutExpired", "UnknownFlowTypeError", "ChildFlowError", "FlowCancelledError",
    "FlowTimeoutError", "SignalTimeoutError", "StepTimeoutError", "PoisonFlowError",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
