"""Durable execution in this process: Executor, Scheduler, Worker, timers, signals, children, DAG."""

from __future__ import annotations

from .child import PendingChild
from .context import FlowContext, Halted, Suspend, current
from .dag import DeferredRegistry, StepHandle
from .execution import Executor, run_claim
from .outcome import (Completed, FlowOutcome, Outcome, Suspended, SuspendReason, is_completed,
                      is_suspended)
from .scheduler import Scheduler
from .signal import InMemorySignalSource, SignalSource, await_external_signal
from .timer import parse_duration, schedule_timer, schedule_timer_named, sleep
from .worker import Worker, WorkerHandle, WorkerStatistics

__all__ = ["Executor", "Outcome", "Completed", "Suspended", "SuspendReason", "FlowOutcome",
           "is_completed", "is_suspended", "Scheduler", "Worker", "WorkerHandle", "WorkerStatistics",
           "FlowContext", "Suspend", "Halted", "current", "run_claim",
           "sleep", "schedule_timer", "schedule_timer_named", "parse_duration",
           "await_external_signal", "SignalSource", "InMemorySignalSource",
           "PendingChild", "DeferredRegistry", "StepHandle"]
