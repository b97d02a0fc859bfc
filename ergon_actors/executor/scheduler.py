"""Scheduler: put flows in the store's queue for workers to run."""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta

from ..core.queues import Queue
from ..errors import SchedulerError
from ..storage.base import LogBase
from ..storage.commands import Scheduled
from .definition import definition_of, encode_args, placement

__all__ = ["Scheduler", "SchedulerError", "schedule_instance"]


async def schedule_instance(storage: LogBase, flow: object, flow_id: str, *, version: str | None = None,
                            ready_at: float | None = None, queue: Queue | str | None = None,
                            priority: int | None = None, dedup_id: str | None = None) -> Scheduled:
    """Schedule a flow instance onto its queue (see Scheduler.schedule), declaring the queue's
    limits unless the store has some."""
    name = definition_of(type(flow)).name
    args = encode_args(flow)
    where = placement(flow, queue, priority)
    if where.queue is not None and where.queue.limits.limited:
        await declare_once(storage, where.queue)
    return await storage.schedule_flow(flow_id, name, args, version=version, ready_at=ready_at, queue=where.name,
                                       priority=where.priority, key=where.key, dedup_id=dedup_id)


async def declare_once(storage: LogBase, queue: Queue) -> None:
    """Declare a queue's limits in the store unless it has some, once per store object."""
    declared: set[str] = storage.__dict__.setdefault("_declared_queues", set())
    if queue.name not in declared:
        await storage.declare_queue(queue.limits, replace=False)
        declared.add(queue.name)


class Scheduler:
    """Schedules flow instances: `flow_id = await Scheduler(store).schedule(MyFlow(...))`."""

    def __init__(self, storage: LogBase, version: str | None = None) -> None:
        self._storage = storage
        self._version = version

    async def schedule(self, flow: object, flow_id: str | None = None, *,
                       delay: float | timedelta | None = None, queue: Queue | str | None = None,
                       priority: int | None = None, dedup_id: str | None = None) -> str:
        """Queue a flow and return its flow_id.

        Args:
            flow: an instance of a @flow_type dataclass.
            flow_id: the idempotency key; scheduling an existing flow_id again returns it
                unchanged and creates nothing.
            delay: run no sooner than this many seconds from now.
            queue: the named queue (a Queue, or a name); default: the class's
                (`@flow_type(queue=...)`), else the default queue. A Queue's limits are declared
                in the store unless it has some already.
            priority: within the queue, higher runs first (default: the queue's priority).
            dedup_id: while a flow of the same queue with this dedup_id has not ended, return
                that flow's id instead of scheduling another.

        Raises:
            FlowDefinitionError: the object is not a valid flow.
            SerializationError: an argument cannot be stored (names the field and its type).
            ConfigError: a bad queue, priority or key.
        """
        if isinstance(delay, timedelta):
            delay = delay.total_seconds()
        ready_at = None if delay is None else time.time() + delay
        scheduled = await schedule_instance(self._storage, flow, flow_id or str(uuid.uuid4()), version=self._version,
                                            ready_at=ready_at, queue=queue, priority=priority, dedup_id=dedup_id)
        return scheduled.flow_id

    def with_version(self, version: str) -> Scheduler:
        """A scheduler that stamps every flow with this deployment version."""
        return Scheduler(self._storage, version)

    def unversioned(self) -> Scheduler:
        return Scheduler(self._storage, None)

    def from_env(self) -> Scheduler:
        """Version from the DEPLOY_VERSION environment variable, if set."""
        return Scheduler(self._storage, os.environ.get("DEPLOY_VERSION"))

    def version(self) -> str | None:
        return self._version

    @property
    def storage(self) -> LogBase:
        return self._storage
