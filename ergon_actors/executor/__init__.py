"""Durable execution in this process: Executor, Scheduler, Worker."""

from .context import FlowContext, Suspend, current
from .execution import Executor, Outcome, run_claim
from .scheduler import Scheduler
from .worker import Worker, WorkerHandle, WorkerStatistics

__all__ = ["Executor", "Outcome", "Scheduler", "Worker", "WorkerHandle", "WorkerStatistics",
           "FlowContext", "Suspend", "current", "run_claim"]
