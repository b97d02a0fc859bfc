"""Durable execution in this process: Executor, Scheduler, Worker, timers, signals, children, DAG."""

from __future__ import annotations

from .child import PendingChild
from .context import FlowContext, Halted, StepCall, Suspend, current, current_step
from .dag import DagSummary, DeferredRegistry, DeferredStep, StepHandle, execute_dag
from .dag_runtime import dag
from .execution import Executor, run_claim
from .instance import execute_flow
from .outcome import (Completed, FlowOutcome, Outcome, Suspended, SuspendReason, is_completed,
                      is_suspended)
from .patch import deprecate_patch, patched
from .pyergon_handlers import complete_child_flow
from .scheduler import Scheduler
from .signal import InMemorySignalSource, SignalSource, await_external_signal
from .suspension_payload import SuspensionPayload
from .timer import parse_duration, schedule_timer, schedule_timer_named, sleep
from .worker import Worker, WorkerHandle, WorkerStatistics

__all__ = ["Executor", "execute_flow", "Outcome", "Completed", "Suspended", "SuspendReason", "FlowOutcome",
           "is_completed", "is_suspended", "Scheduler", "Worker", "WorkerHandle", "WorkerStatistics",
           "FlowContext", "Suspend", "Halted", "current", "current_step", "StepCall", "run_claim",
           "sleep", "schedule_timer", "schedule_timer_named", "parse_duration",
           "await_external_signal", "SignalSource", "InMemorySignalSource",
           "PendingChild", "SuspensionPayload", "complete_child_flow",
           "DeferredRegistry", "DeferredStep", "StepHandle", "DagSummary", "execute_dag", "dag",
           "patched", "deprecate_patch"]
