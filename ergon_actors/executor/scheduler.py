"""Scheduler: put flows in the store's queue for workers to run."""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta

from ..errors import SchedulerError
from ..storage.base import LogBase
from .definition import definition_of, encode_args

__all__ = ["Scheduler", "SchedulerError"]


class Scheduler:
    """Schedules flow instances: `flow_id = await Scheduler(store).schedule(MyFlow(...))`."""

    def __init__(self, storage: LogBase, version: str | None = None) -> None:
        self._storage = storage
        self._version = version

    async def schedule(self, flow: object, flow_id: str | None = None, *,
                       delay: float | timedelta | None = None) -> str:
        """Queue a flow and return its flow_id.

        Args:
            flow: an instance of a @flow_type dataclass.
            flow_id: the idempotency key; scheduling an existing flow_id again returns it
                unchanged and creates nothing.
            delay: run no sooner than this many seconds from now.

        Raises:
            FlowDefinitionError: the object is not a valid flow.
            SerializationError: an argument cannot be stored (names the field and its type).
        """
        definition = definition_of(type(flow))
        args = encode_args(flow)
        if isinstance(delay, timedelta):
            delay = delay.total_seconds()
        ready_at = None if delay is None else time.time() + delay
        scheduled = await self._storage.schedule_flow(flow_id or str(uuid.uuid4()), definition.name, args,
                                                      version=self._version, ready_at=ready_at)
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
