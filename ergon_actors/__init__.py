"""ergon_actors: durable flows of steps on an actor-model multiprocess runtime."""

from __future__ import annotations

import logging

from .core import (CallType, FlowStatus, FlowType, Invocation, InvocationStatus, RetryableError, RetryPolicy,
                   ScheduledFlow, TaskStatus)
from .core.queues import Queue
from .decorators import flow, flow_type, step
from .errors import (ChildFlowError, ConfigError, DagExecutionError, ErgonError, FencedError,
                     FlowCancelledError, FlowDefinitionError, FlowFailedError, FlowNotFoundError,
                     FlowTimeoutError, NondeterminismError, PoisonFlowError, SchedulerError, SerializationError,
                     SignalTimeoutError, StepTimeoutError, StoreError, TimeoutExpired, UnknownFlowTypeError,
                     UnservedVersionError, WorkerError)
from .executor import (Completed, DagSummary, DeferredRegistry, Executor, FlowOutcome, InMemorySignalSource,
                       Outcome, PendingChild, Scheduler, StepHandle, Suspended, SuspendReason,
                       SuspensionPayload, Worker, WorkerHandle, await_external_signal, complete_child_flow,
                       dag, deprecate_patch, execute_dag, execute_flow, is_completed, is_suspended, patched,
                       schedule_timer, schedule_timer_named, sleep)
from .storage import ExecutionLog, InMemoryExecutionLog, SqliteExecutionLog, open_store

__version__ = "0.1.0"

__all__ = [
    "flow", "flow_type", "step",
    "Executor", "execute_flow", "Outcome", "Completed", "Suspended", "SuspendReason", "FlowOutcome",
    "is_completed", "is_suspended", "Scheduler", "Worker", "WorkerHandle",
    "sleep", "schedule_timer", "schedule_timer_named", "await_external_signal", "InMemorySignalSource",
    "PendingChild", "SuspensionPayload", "complete_child_flow",
    "DeferredRegistry", "StepHandle", "DagSummary", "execute_dag", "dag", "patched", "deprecate_patch",
    "ExecutionLog", "InMemoryExecutionLog", "SqliteExecutionLog", "open_store",
    "FlowStatus", "TaskStatus", "RetryPolicy", "RetryableError", "Invocation", "InvocationStatus",
    "ScheduledFlow", "CallType", "FlowType", "Queue",
    "ErgonError", "ConfigError", "FencedError", "FlowDefinitionError", "FlowFailedError",
    "FlowNotFoundError", "NondeterminismError", "SerializationError", "StoreError",
    "TimeoutExpired", "UnknownFlowTypeError", "UnservedVersionError", "ChildFlowError", "FlowCancelledError",
    "FlowTimeoutError", "SignalTimeoutError", "StepTimeoutError", "PoisonFlowError", "SchedulerError",
    "WorkerError", "DagExecutionError",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
