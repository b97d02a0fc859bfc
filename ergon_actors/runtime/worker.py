"""The worker actor: an executor Worker whose store is the journal client."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os

from ..decorators import definition_of
from ..errors import ConfigError, FlowDefinitionError
from ..executor import Worker, WorkerStatistics
from ..executor.observe import Observer, combine
from .actor import Actor
from .client import JournalClient
from .messages import Ready, WorkerStats
from .stats import WorkerCounts

__all__ = ["WorkerActor", "discover_flows"]

log = logging.getLogger(__name__)

# The journal wakes idle workers once a flow of their types is due (it asks the store every
# second for them, so work written by other processes is seen too); an idle worker asks NextDue
# itself only this often, well within the journal's CLAIMER_QUIET, after which it is forgotten.
IDLE_POLL = 20.0


def discover_flows(module_names: list[str]) -> list[type]:
    """Import each module and return the @flow_type classes it defines or imports.

    Raises:
        ImportError: a module cannot be imported.
        FlowDefinitionError: a module defines no flow type, or an invalid one.
    """
    found: dict[int, type] = {}
    for module_name in module_names:
        module = importlib.import_module(module_name)
        classes = [v for v in vars(module).values()
                   if isinstance(v, type) and "__ergon_flow_type__" in vars(v)]
        if not classes:
            raise FlowDefinitionError(f"module {module_name!r} defines no @flow_type class")
        for cls in classes:
            definition_of(cls)
            found[id(cls)] = cls
    return list(found.values())


class WorkerActor(Actor):
    """Runs an executor Worker whose store is a journal client."""

    role = "worker"
    client: JournalClient
    worker: Worker
    running: asyncio.Task[None]

    async def on_start(self) -> None:
        classes = discover_flows(list(self.spec.modules))
        settings = self.settings
        self.client = JournalClient(self.ctx, self.spec.journal, hwm=settings.high_water_mark,
                                    resend_after=settings.resend_after, max_message_size=settings.max_message_size)
        self.resources.push_async_callback(self.client.close)
        self.counts = WorkerCounts()
        self._seen: WorkerStatistics | None = None  # the worker's figures at the last beat
        self.worker = Worker(self.client, self.spec.worker_id, concurrency=settings.concurrency,
                             lease_seconds=settings.lease_seconds, idle_poll=IDLE_POLL,
                             step_timeout=settings.step_timeout,
                             observer=combine([self.counts, self._tracer()]), queues=settings.queues,
                             version=settings.version)
        for cls in classes:
            await self.worker.register(cls)
        self.running = asyncio.get_running_loop().create_task(self.worker.run())

    def _tracer(self) -> Observer | None:
        """The OpenTelemetry tracer the traces setting asks for (None: off, nothing imported)."""
        if not self.settings.traces:
            return None
        try:
            from .tracing import start_tracing
        except ImportError as exc:
            raise ConfigError(f"the traces setting needs OpenTelemetry ({exc}): pip install 'ergon-actors[otel]'"
                              ) from None
        tracer, provider = start_tracing(self.settings.traces)
        self.resources.callback(provider.shutdown)  # flushes the spans not exported yet
        return tracer

    def ready(self) -> Ready:
        return Ready(os.getpid(), self.worker.flow_types)

    def statistics(self) -> WorkerStats:
        s = self.worker.statistics()
        return self.counts.fill(WorkerStats(s.running, s.started, s.finished, s.abandoned, s.halted,
                                            self.client.resent, self.drops.total))

    def busy(self) -> bool:
        """Busy while flows run here or its counts moved since the last beat."""
        stats = self.worker.statistics()
        seen, self._seen = self._seen, stats
        return stats.running > 0 or stats != seen

    async def on_tick(self) -> None:
        if self.running.done():  # the worker loop ends only when stopped: this is a crash
            self.running.result()
            raise RuntimeError(f"worker {self.worker.worker_id} stopped claiming without being asked to")

    async def on_stop(self, grace: float) -> int:
        self.worker.stop()
        await self.running
        return await self.worker.drain(grace)
