"""ergon_actors: durable flows of steps on an actor-model multiprocess runtime."""

import logging

from .core import FlowStatus, RetryableError, RetryPolicy, TaskStatus
from .decorators import flow, flow_type, step
from .errors import (ConfigError, ErgonError, FencedError, FlowDefinitionError, FlowFailedError,
                     FlowNotFoundError, NondeterminismError, SerializationError, StoreError,
                     TimeoutExpired, UnknownFlowTypeError)
from .executor import Executor, Outcome, Scheduler, Worker, WorkerHandle
from .storage import ExecutionLog, InMemoryExecutionLog, SqliteExecutionLog, open_store

__version__ = "0.1.0"

__all__ = [
    "flow", "flow_type", "step",
    "Executor", "Outcome", "Scheduler", "Worker", "WorkerHandle",
    "ExecutionLog", "InMemoryExecutionLog", "SqliteExecutionLog", "open_store",
    "FlowStatus", "TaskStatus", "RetryPolicy", "RetryableError",
    "ErgonError", "ConfigError", "FencedError", "FlowDefinitionError", "FlowFailedError",
    "FlowNotFoundError", "NondeterminismError", "SerializationError", "StoreError",
    "TimeoutExpired", "UnknownFlowTypeError",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
