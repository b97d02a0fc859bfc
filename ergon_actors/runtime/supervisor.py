"""The supervisor: spawns the journal and worker actors, watches them, restarts them by policy.

Restarts are one_for_one: only the actor that died is restarted, after a short jittered
backoff. A worker's unplanned death is recorded on the flows it held (RecordCrash: blame,
quarantine, suspects); such a death is the flows' doing and a restart fixes it, so it does not
count toward the restart intensity. Every other death does (the journal's, a worker's that held
no flow, a start that fails): more than `max_restarts` of them within `restart_period` seconds
stop everything (RestartIntensityError). Workers over `max_rss` or `max_flows` are drained and
replaced, which never counts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, cast

import zmq
import zmq.asyncio

from .. import codec
from ..config import Settings, public_store_url
from ..core import FlowRecord
from ..core.queues import Queue
from ..errors import (ActorStoppedError, BrokenActorError, BrokenStoreError, ErgonError, ProtocolError, TimeoutExpired,
                      UnknownFlowTypeError, UnservedVersionError)
from ..executor import Outcome, Scheduler
from ..storage.crashes import JITTER
from . import rundir
from .actor import BEAT_SUFFIX, EXIT_CONFIG, EXIT_STORE, ActorSpec, StoreWrapper
from .children import Child, kill, stop
from .client import JournalClient
from .drops import DropCounter
from .limits import RECYCLE_MARGIN, RestartWindow, hang, limit_action, record_crash, release_dead, sample_due
from .messages import Drain, Drained, Failed, Heartbeat, Message, Ready, Stop, decode, encode
from .snapshot import Snapshot
from .transport import endpoint, make_socket
from .version import resolve_version

if TYPE_CHECKING:
    from .metrics import MetricsServer

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)

IDLE_SNAPSHOT = 5.0  # seconds between samples of an idle actor and rewrites of the snapshot file while all are


class Supervisor:
    """Runs a journal actor and `settings.workers` worker actors serving `modules`' flow types.

    Use as `async with Supervisor("myapp.flows", workers=4) as sup:`; the context manager
    starts the actors and shuts them down gracefully.

    Args:
        modules: the module(s) whose @flow_type classes the workers serve.
        settings: defaults to Settings.from_env(); keyword overrides replace single settings.
        store_wrapper: for test harnesses only: a callable the journal applies to its store
            (the chaos verifier's deliberately broken stores). Nothing a production run reads,
            no setting and no environment variable, can set it.
        harness_kills: for test harnesses only, likewise: called with the pid of a worker that
            died unplanned; True means the harness killed or stopped it on purpose, so its flows
            are released (ReleaseWorker) instead of having the death recorded and blamed.
    """

    def __init__(self, modules: str | Sequence[str], settings: Settings | None = None, *,
                 store_wrapper: StoreWrapper | None = None, harness_kills: Callable[[int], bool] | None = None,
                 **overrides: Any) -> None:
        self.modules = [modules] if isinstance(modules, str) else list(modules)
        base = settings or Settings.from_env()
        self.settings = base.with_(**overrides) if overrides else base
        self.store_wrapper = store_wrapper
        self.harness_kills = harness_kills
        self.client: JournalClient | None = None
        self._actors: list[Child] = []
        self._window = RestartWindow(self.settings.max_restarts, self.settings.restart_period)
        self._dying = 0  # worker deaths being recorded now
        self._quiet_until = 0.0  # until then, suspects released by a crash may not be due yet
        self._crashes = self._quarantined = self._recycles = 0
        self._closing = False
        self._closed = asyncio.Event()
        self._hurry = asyncio.Event()  # a second shutdown with no grace: stop at once
        self._failure: BaseException | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._state = "starting"
        self._host = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"  # unique per supervisor
        self._started = 0.0
        self._run_dir = ""
        self.drops = DropCounter(log, "supervisor")
        self._metrics: MetricsServer | None = None
        self._shape: tuple[object, ...] = ()  # what the last snapshot written showed, figures aside
        self._written = 0.0  # monotonic time it was written

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn every actor and wait for each READY.

        Raises:
            BrokenActorError: an actor failed to start, exited before READY or sent none within
                `ready_timeout`; every actor started so far is killed first.
        """
        s = self.settings = resolve_version(self.settings, self.modules)
        self._started = time.time()
        if s.metrics_port:  # first: a port in use fails the start before any process exists
            from .metrics import MetricsServer  # prometheus_client is imported only when asked for
            self._metrics = MetricsServer(self.snapshot, lambda: self._client().count_flows())
            await self._metrics.start(s.metrics_host, s.metrics_port)
        self._run_dir, dead = rundir.create(store=public_store_url(s.store))
        self._ctx = zmq.asyncio.Context()
        self._ctl = make_socket(self._ctx, zmq.ROUTER, s.high_water_mark, max_message_size=s.max_message_size)
        self._ctl_address = endpoint(s.transport, self._run_dir, "supervisor")
        self._ctl.bind(self._ctl_address)
        # the loop watches the socket's descriptor itself (see _receive); sends go the same way
        self._ctl_raw: zmq.Socket[bytes] = zmq.Socket.shadow(self._ctl.underlying)
        self._ctl_fd = cast(int, self._ctl_raw.getsockopt(zmq.FD))
        self._by_identity: dict[bytes, Child] = {}
        asyncio.get_running_loop().add_reader(self._ctl_fd, self._receive)
        self._journal_address = endpoint(s.transport, self._run_dir, "journal")
        self._actors = [Child("journal", "journal")] + [Child(f"worker-{i}", "worker") for i in range(s.workers)]
        # The client connects now: a worker that dies while the others start has its flows
        # released too (requests wait in ZeroMQ's queue until the journal binds).
        self.client = JournalClient(self._ctx, self._journal_address, hwm=s.high_water_mark,
                                    resend_after=s.resend_after, max_message_size=s.max_message_size)
        self._spawn_task(self._watch())
        if dead:  # answered once the journal is up
            self._spawn_task(release_dead(self.client, dead, public_store_url(s.store)))
        try:
            await asyncio.gather(*(self._start_actor(a) for a in self._actors))
        except BaseException:
            await self._kill_all()
            await self.client.close()
            self._cleanup()
            raise
        self._state = "running"
        self._write_snapshot()
        log.info("supervisor started %d workers on %s", s.workers, public_store_url(s.store))

    def _spec(self, actor: Child) -> ActorSpec:
        level = logging.getLevelName(logging.getLogger("ergon_actors").getEffectiveLevel())
        return ActorSpec(actor.role, actor.label, os.getpid(), self._ctl_address,
                         self._journal_address, self.settings, tuple(self.modules), actor.worker_id or "",
                         tuple(sys.path), level, self.store_wrapper if actor.role == "journal" else None)

    async def _start_actor(self, actor: Child) -> None:
        actor.incarnation += 1
        if actor.role == "worker":
            actor.worker_id = f"{self._host}-{actor.name}.{actor.incarnation}"
        elif self._journal_address.startswith("ipc://") and os.path.exists(self._journal_address[6:]):
            os.unlink(self._journal_address[6:])  # the socket file of a journal that died
        path = os.path.join(self._run_dir, f"{actor.name}.spec")
        self._spec(actor).write(path)
        await actor.start(path, self.settings.ready_timeout)
        assert actor.proc is not None
        self._spawn_task(self._watch_exit(actor, actor.proc))
        log.info("actor %s ready (pid %d)", actor.label, actor.proc.pid)

    async def _watch_exit(self, actor: Child, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if self._closing or actor.proc is not proc:
            return
        actor.exit_codes.append(code)
        if actor.role == "journal" and code == EXIT_STORE:
            self._fail(BrokenStoreError(f"the journal stopped: its store {public_store_url(self.settings.store)} "
                                        "is broken (its error is logged above); restarting cannot help",
                                        actor=actor.label, exit_code=code))
            return
        self._dying += 1
        try:
            counts = await self._record_death(actor, proc.pid, code)
        finally:
            self._dying -= 1
            self._quiet_until = time.monotonic() + JITTER  # suspects released with jitter are due soon
        cause = actor.death_cause(code)
        while not self._closing:
            if counts:
                error = self._window.add(actor.name, code)
                if error is not None:
                    self._fail(error)
                    return
            actor.count_restart(cause)
            if actor.recycling is None or code != 0:
                if time.monotonic() - actor.last_death > self.settings.restart_period:
                    actor.backoff.reset()
                actor.last_death = time.monotonic()
                await asyncio.sleep(actor.backoff.next())
            try:
                await self._start_actor(actor)
                return
            except BrokenActorError as exc:
                code = exc.exit_code if exc.exit_code is not None else -1
                actor.exit_codes.append(code)
                counts = True  # an actor that cannot start: a restart may fix it, or nothing will
                cause = "start"
                log.warning("restart of actor %s failed: %s", actor.name, exc)

    async def _record_death(self, actor: Child, pid: int, code: int) -> bool:
        """Log an actor's exit and record a worker's on its flows; returns whether the death counts
        toward the restart intensity (a planned recycle or a crash a flow is blamed for does not)."""
        if actor.recycling is not None and code == 0:
            self._recycles += 1
            log.info("worker %s (pid %d) recycled (%s); starting its replacement", actor.label, pid, actor.recycling)
            if actor.worker_id is not None and self.client is not None:
                self._spawn_task(self._release(actor.worker_id))
            return False
        log.warning("actor %s (pid %d) exited with code %s", actor.label, pid, code)
        if actor.worker_id is None or self.client is None:
            return True
        if self.harness_kills is not None and self.harness_kills(pid):
            log.info("worker %s (pid %d) was killed by the test harness: its flows are released, not blamed",
                     actor.label, pid)
            self._spawn_task(self._release(actor.worker_id))
            return True
        flows = await record_crash(self.client, actor.worker_id, code, actor.kill_cause, self.settings.max_crashes)
        if flows is None:
            return True
        self._crashes += 1 if flows else 0
        self._quarantined += sum(1 for f in flows if f.quarantined)
        return not flows

    async def _release(self, worker_id: str) -> None:
        assert self.client is not None
        released = await self.client.release_worker(worker_id)
        if released:
            log.info("released %d flows of worker %s", released, worker_id)

    def _receive(self) -> None:
        """Handle every message that has arrived from the actors, without waiting.

        Called by the loop when the socket's file descriptor fires, and after each send. The
        descriptor is edge-triggered and any call on the socket can consume its signal, so this
        reads until nothing is left (no future per message: an idle tree's heartbeats cost little).
        """
        beat_suffix = BEAT_SUFFIX.encode()
        while not self._closed.is_set():
            try:
                identity, *frames = self._ctl_raw.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            label = identity.removesuffix(beat_suffix)  # heartbeats come from a socket of their own
            actor = self._by_identity.get(label)
            if actor is None or actor.label.encode() != label:
                actor = next((a for a in self._actors if a.label.encode() == label), None)
                if actor is None:
                    continue  # a message from an earlier incarnation: ignore it
                self._by_identity[label] = actor
            try:
                message = decode(frames[-1])
            except ProtocolError as exc:
                self.drops.drop(actor.name, exc)
                continue
            actor.last_seen = time.monotonic()
            self._on_message(actor, message)

    def _on_message(self, actor: Child, message: Message) -> None:
        pending = actor.ready is not None and not actor.ready.done()
        if isinstance(message, Heartbeat):
            actor.stats = message.stats
            actor.loop_age = message.loop_age
            actor.idle = message.idle
        elif isinstance(message, Ready) and pending:
            assert actor.ready is not None
            actor.flow_types = message.flow_types
            actor.ready.set_result(message)
        elif isinstance(message, Failed) and pending:
            assert actor.ready is not None
            actor.ready.set_exception(BrokenActorError(f"actor {actor.name} failed to start: {message.reason}",
                                                       actor=actor.name, exit_code=EXIT_CONFIG))
        elif isinstance(message, Drained):
            log.info("actor %s drained (%d flows cut mid-step)", actor.name, message.cancelled)

    async def _watch(self) -> None:
        """At each check (see `_next_check`): sample the actors that are due (see `sample_due`:
        idle ones every IDLE_SNAPSHOT seconds), judge hangs and limits, and rewrite the snapshot
        file when it changed (see `_publish`)."""
        interval = self.settings.heartbeat_interval
        expected = time.monotonic()
        while not self._closing:
            now = time.monotonic()
            late = now - expected > interval + 0.5
            for actor in self._actors:
                if sample_due(actor, now, self.settings, IDLE_SNAPSHOT):
                    actor.sample()
            # a late tick: this process was held up itself, the heartbeats queued meanwhile are read first
            for actor in self._actors if self._state == "running" and not late else ():
                why = hang(actor, now, self.settings) if actor.is_ready else None
                if why is not None:
                    self._kill(actor, "hang", why)
                    actor.last_seen = now
                elif actor.role == "worker" and actor.is_ready:
                    self._enforce_limits(actor, now)
            self._publish(now)
            delay = self._next_check(now)
            expected = now + delay
            await asyncio.sleep(delay)

    def _next_check(self, now: float) -> float:
        """Seconds until the next check: one heartbeat interval, or while every actor is ready,
        idle and on time, until one of them could be late with its heartbeat (then it is checked
        every interval, so a frozen one is still seen once it is silent for hang_timeout) or the
        snapshot is due."""
        s = self.settings
        if self._state != "running" or not all(a.idle and a.is_ready for a in self._actors):
            return s.heartbeat_interval
        due = min([self._written + IDLE_SNAPSHOT] + [a.last_seen + s.idle_beat + s.heartbeat_interval
                                                     for a in self._actors])
        return max(s.heartbeat_interval, due - now)

    def _enforce_limits(self, worker: Child, now: float) -> None:
        action = limit_action(worker, self.settings, now)
        if action is None:
            return
        what, cause, why = action
        if what == "kill":
            self._kill(worker, cause, why)
            return
        log.info("recycling worker %s (pid %s): %s", worker.label, worker.pid, why)
        worker.recycling = cause
        worker.recycle_by = now + self.settings.grace + RECYCLE_MARGIN
        self._send(worker, Drain(self.settings.grace))

    def _kill(self, actor: Child, cause: str, why: str) -> None:
        """SIGKILL an actor; its death is recorded with `cause` ("hang", "memory")."""
        log.warning("killing actor %s (pid %s): %s", actor.label, actor.pid, why)
        actor.kill_cause = cause
        actor.signal(signal.SIGKILL)

    def _publish(self, now: float) -> None:
        """Rewrite the snapshot file while an actor is busy, when an actor or this supervisor
        changed state (a start, a death, a restart), and otherwise every IDLE_SNAPSHOT seconds."""
        shape = (self._state, self.drops.total, self._crashes, self._quarantined, self._recycles,
                 tuple((a.pid, a.alive, a.is_ready, a.restarts, a.idle) for a in self._actors))
        if (shape != self._shape or now - self._written >= IDLE_SNAPSHOT
                or not all(a.idle for a in self._actors)):
            self._shape, self._written = shape, now
            self._write_snapshot()

    def _write_snapshot(self) -> None:
        try:
            rundir.write_snapshot(self._run_dir, self.snapshot())
        except OSError as exc:
            log.warning("could not write the status snapshot to %s: %s", self._run_dir, exc)

    def _fail(self, exc: BaseException) -> None:
        log.error("supervisor giving up: %s", exc)
        self._failure = exc
        self._spawn_task(self.shutdown(grace=0))

    def _spawn_task(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_closed(self) -> None:
        """Wait until the supervisor has shut down; raises what made it give up, if anything."""
        await self._closed.wait()
        if self._failure is not None:
            raise self._failure

    async def shutdown(self, grace: float | None = None) -> None:
        """Drain workers (steps in flight finish within `grace` seconds), then stop the journal.

        Workers still running after the grace period get SIGTERM, then SIGKILL with a warning.
        A call with grace=0 while a shutdown is under way makes it stop at once. If the journal
        is down, workers are killed at once: nothing they do could be journaled.
        """
        if grace == 0:
            self._hurry.set()
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self._state = "stopping"
        grace = self.settings.grace if grace is None else grace
        # Stop watching first: a restart in flight kills and reaps the actor it was starting.
        watchers = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        self._write_snapshot()
        journal = self._actors[0]
        workers = self._actors[1:]
        if journal.alive:
            for actor in workers:
                self._send(actor, Drain(grace))
            await stop(workers, grace + 2.0, self._hurry)
            await self._release_killed(workers)
        else:
            log.warning("the journal is down: stopping workers at once (nothing they do could be "
                        "journaled); their flows are taken over when their leases lapse")
            await kill(workers)
        if self.client is not None:
            await self.client.close()
        self._send(journal, Stop())
        await stop([journal], 5.0, self._hurry)
        self._cleanup()
        log.info("supervisor stopped")

    async def _release_killed(self, workers: list[Child]) -> None:
        """Return the flows of workers that did not drain to the queue now."""
        killed = [a.worker_id for a in workers if a.worker_id and a.proc is not None and a.proc.returncode != 0]
        if not killed or self.client is None:
            return
        try:
            await asyncio.wait_for(asyncio.gather(*(self.client.release_worker(w) for w in killed)), 5.0)
        except TimeoutError:
            log.warning("could not release flows at shutdown: no answer from the journal within 5s; "
                        "the leases of %s will lapse", ", ".join(killed))
        except ErgonError as exc:
            log.warning("could not release flows at shutdown (%s: %s); the leases of %s will lapse",
                        type(exc).__name__, exc, ", ".join(killed))

    def _send(self, actor: Child, message: Message) -> None:
        if actor.alive:
            # a ROUTER never blocks: it drops a message for a peer that is gone or not reading
            self._ctl_raw.send_multipart((actor.label.encode(), encode(message)), zmq.NOBLOCK)
            asyncio.get_running_loop().call_soon(self._receive)  # the send may have taken a wake-up

    async def _kill_all(self) -> None:
        self._closing = True
        await kill(self._actors)

    def _cleanup(self) -> None:
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        if self._metrics is not None:
            self._metrics.close()
        asyncio.get_running_loop().remove_reader(self._ctl_fd)
        self._ctl.close(linger=0)
        self._ctx.term()
        shutil.rmtree(self._run_dir, ignore_errors=True)
        self._closed.set()

    # -- using it --------------------------------------------------------------------------

    def _client(self) -> JournalClient:
        if self.client is None:
            raise ActorStoppedError("the supervisor is not started")
        return self.client

    async def schedule(self, flow: object, flow_id: str | None = None, *, delay: float | None = None,
                       queue: Queue | str | None = None, priority: int | None = None,
                       dedup_id: str | None = None) -> str:
        """Queue a flow (see Scheduler.schedule), of the code version served; returns its flow_id."""
        return await Scheduler(self._client(), self.settings.version).schedule(
            flow, flow_id, delay=delay, queue=queue, priority=priority, dedup_id=dedup_id)

    async def wait_for(self, flow_id: str, timeout: float | None = None) -> FlowRecord:
        """Wait until the flow ends; returns its record."""
        return await self._client().wait_for_completion(flow_id, timeout)

    async def result(self, flow_id: str, timeout: float | None = None) -> Any:
        """The flow's result once it completes; FlowFailedError if it failed or was cancelled."""
        return Outcome.of(await self.wait_for(flow_id, timeout)).unwrap()

    async def send_signal(self, name: str, payload: Any = None) -> bool:
        """Deliver a signal to the flow waiting for `name` (now or later); False if already sent."""
        return await self._client().send_signal(name, codec.encode(payload))

    async def cancel(self, flow_id: str) -> str:
        """Cancel a flow and its children; returns its status (RUNNING: stops at its next step)."""
        return await self._client().cancel_flow(flow_id)

    async def wait_until_idle(self, timeout: float | None = None, poll: float = 0.05) -> None:
        """Return once no flow is running and none is due (pending, or a timer that fired).

        Raises:
            UnknownFlowTypeError: flows are due that no worker here serves (they would wait forever).
            UnservedVersionError: flows are due of a code version the workers here do not serve.
            TimeoutExpired: still busy after `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        stalled_since = None
        while True:
            counts = await self._client().count_flows(limit=1)
            settled = not self._dying and time.monotonic() >= self._quiet_until
            if counts.get("RUNNING", 0) == 0 and counts.get("due", 0) == 0 and settled:
                return
            if counts.get("RUNNING", 0) or stalled_since is None:
                stalled_since = None if counts.get("RUNNING", 0) else time.monotonic()
            elif time.monotonic() - stalled_since > 2.0:  # due, yet nobody claims them for 2 s
                await self._check_served()
                stalled_since = None
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutExpired(f"flows still busy after {timeout}s: {counts}")
            await asyncio.sleep(poll)

    async def _check_served(self) -> None:
        served = {name for a in self._actors for name in a.flow_types}
        if not served:
            return  # no worker has reported yet
        now = time.time()
        waiting = [f for status in ("PENDING", "SUSPENDED")
                   for f in await self._client().list_flows(status, limit=1000)
                   if f.ready_at is not None and f.ready_at <= now]
        unserved = sorted({f.flow_type for f in waiting} - served)
        if unserved:
            raise UnknownFlowTypeError(", ".join(unserved), tuple(sorted(served)))
        version = self.settings.version
        others = sorted({f.version for f in waiting if f.version is not None and version is not None} - {version})
        if version is not None and others:
            raise UnservedVersionError(tuple(others), version)

    @property
    def metrics_url(self) -> str | None:
        """Where Prometheus metrics are served (the metrics_port setting), or None."""
        return self._metrics.address if self._metrics is not None else None

    @property
    def journal_address(self) -> str:
        """The ZeroMQ address the journal actor listens on."""
        return self._journal_address

    def pids(self) -> dict[str, int]:
        """The pid of every live actor, by name."""
        return {a.name: a.proc.pid for a in self._actors if a.proc is not None and a.proc.returncode is None}

    def worker_ids(self) -> dict[str, str]:
        return {a.name: a.worker_id for a in self._actors if a.worker_id is not None}

    def snapshot(self) -> Snapshot:
        """The status snapshot: this supervisor and each actor's pid, readiness, restarts and exit
        codes, last heartbeat (its age and figures), memory and CPU use (sampled once per
        heartbeat interval); the worker crashes recorded on flows, the flows they quarantined and
        the workers recycled."""
        now = time.monotonic()
        return Snapshot(os.getpid(), self._host, public_store_url(self.settings.store), self._started,
                        self._state, self._run_dir, self.drops.total, tuple(a.info(now) for a in self._actors),
                        self._crashes, self._quarantined, self._recycles)
