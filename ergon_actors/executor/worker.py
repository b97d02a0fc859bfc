"""Worker: claims flows from a store and runs many of them at once on this event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from .. import codec
from ..config import DEFAULT_STEP_TIMEOUT
from ..core.backoff import Backoff, FailureLog
from ..core.queues import overridden, parse_queue_overrides
from ..errors import FencedError, FlowDefinitionError, WorkerError
from ..storage.base import LogBase
from ..storage.commands import Claim
from ..storage.pyergon import remember_entry
from .context import Halted
from .definition import FlowDefinition, build_flow, definition_of
from .execution import Executor, run_claim
from .observe import Observer
from .outcome import Completed, Outcome
from .pyergon_worker import PyErgonBuilders
from .signal import SignalSource

__all__ = ["Worker", "WorkerHandle", "WorkerStatistics", "WorkerError", "Registry"]

log = logging.getLogger(__name__)


Entry = Callable[[Any], Awaitable[Any]]


class Registry:
    """The flow types a worker serves, by name, each with the call that runs its flows."""

    def __init__(self) -> None:
        self._flows: dict[str, tuple[FlowDefinition, Entry | None]] = {}

    def register(self, cls: type, executor: Entry | None = None) -> FlowDefinition:
        """Serve a @flow_type class; `executor` (e.g. `lambda f: f.run()`) names its entry.

        Raises:
            FlowDefinitionError: not a flow class, or one with several @flow methods and no executor.
            ValueError: another class has its name.
        """
        definition = definition_of(cls)
        if executor is None:
            definition.entry_name()  # FlowDefinitionError if it has several @flow methods
        known = self._flows.get(definition.name)
        if known is not None and known[0].cls is not cls:
            raise ValueError(f"two flow classes named {definition.name!r}: "
                             f"{known[0].cls.__module__} and {cls.__module__}")
        self._flows[definition.name] = (definition, executor)
        remember_entry(definition.name, definition.entry)
        return definition

    def definition(self, flow_type: str) -> tuple[FlowDefinition, Entry | None]:
        """The definition of a registered flow type and its entry (None: its @flow method)."""
        return self._flows[flow_type]

    def get_executor(self, flow_type: str) -> Callable[..., Awaitable[Outcome]] | None:
        """PyErgon's form: `await run(flow_data, flow_id, storage, parent_metadata=None)` runs one
        flow of this type from its stored arguments in this process; None if not registered."""
        if flow_type not in self._flows:
            return None
        definition, entry = self._flows[flow_type]

        async def run(flow_data: bytes, flow_id: object, storage: LogBase,
                      parent_metadata: object = None) -> Outcome:
            try:
                instance = build_flow(definition, flow_data)
            except Exception as exc:  # bytes that are not this flow's arguments
                return Completed(WorkerError(f"failed to deserialize flow {flow_id}: {exc}"))
            return await Executor(instance, storage, str(flow_id)).run(entry)
        return run

    def __contains__(self, flow_type: object) -> bool:
        return flow_type in self._flows

    def __iter__(self) -> Iterator[str]:
        return iter(self._flows)

    def __len__(self) -> int:
        return len(self._flows)

    def is_empty(self) -> bool:
        return not self._flows


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    worker_id: str
    running: int
    started: int
    finished: int
    abandoned: int
    halted: int


class Worker(PyErgonBuilders):
    """Runs registered flow types from a store (the same code runs inside worker actors).

    Suspects (flows whose worker died) run in their groups: an idle worker claims "solo" and may
    get a group of suspects and nothing else, and claims nothing more until their runs end.
    While suspects are due, a busy worker's claims get nothing, so it finishes what it runs,
    becomes idle and claims solo.

    Args:
        storage: the store, or the journal client inside a worker actor.
        name: the worker_id written as the lease owner; unique per running worker.
        concurrency: flows run at once.
        lease_seconds: how long a claim stays ours without renewal; renewed every third of it.
        poll_interval: how long a busy worker waits before looking for more work.
        idle_poll: the longest an idle worker sleeps: it sleeps until the next flow of its types
            is due (a timer, a retry, a lease to take over) or it is woken by new work committed
            through the same store, and at most this long; then it asks the store (NextDue)
            again, to see work written by other processes or hosts, and claims once some is due.
        step_timeout: seconds a try of a step that sets no timeout of its own may run before it
            fails with StepTimeoutError (the step_timeout setting; inf: no bound).
        observer: told of every run of a flow and every step body (metrics, traces); see
            executor.observe.
        queues: the queues setting ("NAME:concurrency=3,...", see Settings): overrides the limits
            of the queues of the classes registered here, which register() declares in the store.
        version: the code version served: only flows of it or of none are claimed, and those of
            none are pinned to it (None: every flow, none pinned).
    """

    def __init__(self, storage: LogBase, name: str | None = None, *, enable_timers: bool = True,
                 concurrency: int = 64, lease_seconds: float = 30.0, poll_interval: float = 0.05,
                 idle_poll: float = 1.0, step_timeout: float = DEFAULT_STEP_TIMEOUT,
                 worker_id: str | None = None, observer: Observer | None = None, queues: str = "",
                 version: str | None = None) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self._queue_overrides = parse_queue_overrides(queues)
        self.storage = storage
        self.worker_id = name or worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.idle_poll = max(idle_poll, poll_interval)
        self.step_timeout = step_timeout
        self.observer = observer
        self.version = version
        self._registry = Registry()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._suspects: set[str] = set()  # the group of suspect flows running here, with nothing else
        self._wake = asyncio.Event()  # a slot freed, new work committed, or stop
        storage.listen(self._wake)
        self._halt = asyncio.Event()
        self._stopped = asyncio.Event()
        self._counts = {"started": 0, "finished": 0, "abandoned": 0, "halted": 0}
        self._signal_source: SignalSource | None = None
        self._signal_poll_interval = 0.5

    async def register(self, cls: type, executor: Callable[[Any], Awaitable[Any]] | None = None) -> None:
        """Serve this @flow_type class. Raises FlowDefinitionError for an invalid flow class.

        `executor` (PyErgon's form, e.g. `lambda f: f.run()`) is what runs each flow of the
        class; it is needed only when the class has several @flow methods. The class's queue
        (`@flow_type(queue=...)`) has its limits, with the queues setting's overrides, declared
        in the store.
        """
        self._registry.register(cls, executor)
        queue = definition_of(cls).queue
        if queue is not None:
            await self.storage.declare_queue(overridden(queue.limits, self._queue_overrides))

    def with_signals(self, source: SignalSource, poll_interval: float = 0.5) -> Worker:
        """Also deliver signals from `source` (poll_for_signal/consume_signal) to waiting flows."""
        self._signal_source = source
        self._signal_poll_interval = poll_interval
        return self

    async def _poll_signals(self, source: SignalSource) -> None:
        while not self._stopped.is_set():
            for name in await self.storage.waiting_signals():
                payload = await source.poll_for_signal(name)
                if payload is not None:
                    await self.storage.send_signal(name, codec.encode(payload))
                    consume = getattr(source, "consume_signal", None)
                    if consume is not None:
                        await consume(name)
            await asyncio.sleep(self._signal_poll_interval)

    @property
    def flow_types(self) -> tuple[str, ...]:
        return tuple(self._registry)

    async def start(self) -> WorkerHandle:
        """Start claiming and running flows in a background task."""
        if not self._registry:
            raise FlowDefinitionError("register at least one @flow_type class before start()")
        return WorkerHandle(self, asyncio.get_running_loop().create_task(self.run(), name=self.worker_id))

    def statistics(self) -> WorkerStatistics:
        return WorkerStatistics(self.worker_id, len(self._running), **self._counts)

    async def run(self) -> None:
        """Claim and run flows until stop() is called."""
        source = self._signal_source
        if source is None:
            return await self._run()
        poller = asyncio.get_running_loop().create_task(self._poll_signals(source))
        try:
            await self._run()
        finally:
            poller.cancel()

    async def _run(self) -> None:
        renew_at = time.monotonic() + self.lease_seconds / 3
        batch = max(1, self.concurrency // 4)  # claim in batches while busy, at once while idle
        # A failing store is retried with jittered backoff, at most a tenth of a lease apart so
        # that leases are renewed in time once it works again.
        backoff = Backoff(self.poll_interval, min(2.0, self.lease_seconds / 10))
        failures = FailureLog(log, f"worker {self.worker_id}: claiming or renewing leases")
        idle = 0  # empty claims in a row with nothing running
        while not self._stopped.is_set():
            self._wake.clear()
            free = 0 if self._suspects else self.concurrency - len(self._running)
            got = 0
            try:
                if free >= batch or (free > 0 and len(self._running) < batch):
                    claims = await self.storage.claim(self.worker_id, free, self.lease_seconds,
                                                      flow_types=self.flow_types, solo=not self._running,
                                                      version=self.version)
                    for claim in claims:
                        self._spawn(claim)
                    got = len(claims)
                    if self._suspects:
                        log.info("worker %s runs %d suspect flows with nothing beside them (their worker died)",
                                 self.worker_id, len(self._suspects))
                if self._running and time.monotonic() >= renew_at:
                    await self.storage.renew_leases(self.worker_id, self.lease_seconds, tuple(self._running))
                    renew_at = time.monotonic() + self.lease_seconds / 3
            except Exception as exc:  # the store failed: leases outlive a few retries
                failures.failed(exc)
                await self._pause(backoff.next())
                continue
            backoff.reset()
            failures.recovered()
            if got < free or free == 0:
                idle = idle + 1 if not self._running and got == 0 else 0
                if idle == 0:
                    await self._wait(self.poll_interval)
                else:
                    await self._idle(idle)

    async def _wait(self, delay: float) -> bool:
        """Wait `delay` seconds or until woken (new work, a freed slot, stop); returns whether woken."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)
        return self._wake.is_set()

    async def _idle(self, rounds: int) -> None:
        """Sleep while idle, after `rounds` empty claims in a row; return when a claim may find work.

        That is at a wake (work committed through this store), or once `NextDue` says a flow of
        this worker's types is due. Without one due, NextDue is asked again after a backoff that
        doubles up to idle_poll (work written by other processes sends no wake); no claim is
        sent meanwhile. A flow due already that the last claim did not get (another worker took
        it, or its queue is at its limit) is claimed again after the backoff, not at once.
        """
        first = True
        while not self._wake.is_set():
            ceiling = min(self.idle_poll, self.poll_interval * (1 << min(rounds, 16)))
            try:
                due = await self.storage.next_due(self.flow_types)
            except Exception:  # the claim loop reports a failing store; this is only a hint
                await self._wait(ceiling)
                return
            now = time.time()
            if due is not None and due <= now and not first:
                return
            delay = ceiling if due is None or due <= now else min(due - now + 0.001, self.idle_poll)
            if await self._wait(delay) or (due is not None and due <= time.time()):
                return
            first, rounds = False, rounds + 1

    async def _pause(self, delay: float) -> None:
        """Wait `delay` seconds, or until stop(); new work does not end the wait."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), delay)

    def _spawn(self, claim: Claim) -> None:
        flow_id = claim.flow.flow_id
        old = self._running.get(flow_id)
        if old is not None:  # our earlier run of it was fenced off but has not unwound yet
            old.cancel()
        if claim.flow.suspect:
            self._suspects.add(flow_id)
        self._counts["started"] += 1
        task = asyncio.get_running_loop().create_task(self._run_flow(claim), name=flow_id)
        self._running[flow_id] = task

    async def _run_flow(self, claim: Claim) -> None:
        flow = claim.flow
        try:
            definition, entry = self._registry.definition(flow.flow_type)
            await run_claim(self.storage, claim, definition, entry=entry, halt=self._halt,
                            step_timeout=self.step_timeout, observer=self.observer)
            self._counts["finished"] += 1
        except Halted:
            self._counts["halted"] += 1
        except FencedError as exc:
            self._counts["abandoned"] += 1
            log.warning("worker %s abandoned flow %s: %s", self.worker_id, flow.flow_id, exc)
        except Exception:
            self._counts["abandoned"] += 1
            log.exception("worker %s could not journal flow %s; its lease will lapse",
                          self.worker_id, flow.flow_id)
        finally:
            if self._running.get(flow.flow_id) is asyncio.current_task():
                del self._running[flow.flow_id]
                self._suspects.discard(flow.flow_id)
            self._wake.set()

    def stop(self) -> None:
        """Stop claiming; flows already running go on."""
        self._stopped.set()
        self._wake.set()

    async def settle(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the flows running now to end or suspend."""
        tasks = list(self._running.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def drain(self, grace: float) -> int:
        """Let steps in flight finish (up to `grace` seconds), stop each flow at its next step
        boundary, cancel what is still running, and release every flow of this worker.

        Returns the number of flows cancelled mid-step (their step runs again elsewhere).
        """
        self.stop()
        self._halt.set()
        tasks = list(self._running.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        late = [t for t in tasks if not t.done()]
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)
            log.warning("worker %s cancelled %d flows still running after %.3gs; releasing them",
                        self.worker_id, len(late), grace)
        await self.storage.release_worker(self.worker_id)
        self.storage.unlisten(self._wake)  # a store may outlive many workers
        return len(late)


class WorkerHandle:
    """A started worker: `await handle.shutdown()` drains it."""

    def __init__(self, worker: Worker, task: asyncio.Task[None]) -> None:
        self.worker = worker
        self.task = task

    def worker_id(self) -> str:
        return self.worker.worker_id

    def is_running(self) -> bool:
        """True until the worker was shut down or aborted."""
        return not self.task.done()

    def abort(self) -> None:
        """Stop at once: cancel the worker; flows it held run again once their leases lapse."""
        self.worker.stop()
        self.task.cancel()

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop claiming and let running flows run to their end (complete, fail or wait) for up
        to `grace` seconds; then stop the rest at their next step boundary and release them."""
        deadline = time.monotonic() + grace
        self.worker.stop()
        await self.task
        await self.worker.settle(grace)
        await self.worker.drain(max(0.0, deadline - time.monotonic()))
