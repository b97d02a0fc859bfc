"""The supervisor: spawns the journal and worker actors, watches them, restarts them by policy.

Restarts are one_for_one: only the actor that died is restarted, after a short backoff. More
than `max_restarts` restarts within `restart_period` seconds stop everything
(RestartIntensityError). A dead worker's flows are released at once through the journal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import psutil
import zmq
import zmq.asyncio

from .. import codec
from ..config import Settings
from ..core import FlowRecord
from ..errors import (BrokenActorError, ProtocolError, RestartIntensityError, TimeoutExpired,
                      UnknownFlowTypeError)
from ..executor import Outcome, Scheduler
from ..wire import pack, unpack
from .client import JournalClient
from .drops import DropCounter
from .transport import endpoint, make_socket

__all__ = ["Supervisor", "ActorInfo", "SupervisorStatistics"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Actor:
    name: str
    role: str
    spec: dict[str, Any]
    worker_id: str = ""
    incarnation: int = 0
    proc: asyncio.subprocess.Process | None = None
    ready: asyncio.Future | None = None
    last_seen: float = 0.0
    stats: dict = field(default_factory=dict)
    restarts: int = 0
    flow_types: tuple[str, ...] = ()
    exit_codes: deque = field(default_factory=lambda: deque(maxlen=10))

    @property
    def identity(self) -> bytes:
        return f"{self.name}#{self.incarnation}".encode()


@dataclass(frozen=True, slots=True)
class ActorInfo:
    name: str
    role: str
    pid: int | None
    alive: bool
    ready: bool  # alive and its READY received: a restarted actor is not ready until it says so
    restarts: int
    exit_codes: tuple[int, ...]
    rss_bytes: int | None
    stats: dict


@dataclass(frozen=True, slots=True)
class SupervisorStatistics:
    actors: tuple[ActorInfo, ...]
    restarts: int

    @property
    def journal(self) -> dict:
        return next((a.stats for a in self.actors if a.role == "journal"), {})


class Supervisor:
    """Runs a journal actor and `settings.workers` worker actors serving `modules`' flow types.

    Use as `async with Supervisor("myapp.flows", workers=4) as sup:`; the context manager
    starts the actors and shuts them down gracefully.
    """

    def __init__(self, modules: str | Sequence[str], settings: Settings | None = None,
                 **overrides: Any) -> None:
        self.modules = [modules] if isinstance(modules, str) else list(modules)
        base = settings or Settings.from_env()
        self.settings = base.with_(**overrides) if overrides else base
        self.client: JournalClient | None = None
        self._actors: list[_Actor] = []
        self._restart_times: deque[float] = deque()
        self._closing = False
        self._closed = asyncio.Event()
        self._failure: BaseException | None = None
        self._tasks: set[asyncio.Task] = set()
        self.drops = DropCounter(log, "supervisor")

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn every actor and wait for each READY (BrokenActorError if one fails)."""
        s = self.settings
        self._run_dir = tempfile.mkdtemp(prefix="ergon-")
        self._ctx = zmq.asyncio.Context()
        self._ctl = make_socket(self._ctx, zmq.ROUTER, s.high_water_mark, max_message_size=s.max_message_size)
        ctl_address = endpoint(s.transport, self._run_dir, "supervisor")
        self._ctl.bind(ctl_address)
        journal_address = endpoint(s.transport, self._run_dir, "journal")
        base = {"settings": json.loads(s.to_json()), "supervisor": ctl_address, "sys_path": sys.path,
                "log_level": logging.getLevelName(logging.getLogger("ergon_actors").getEffectiveLevel())}
        host = self._host = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"  # unique per supervisor
        self._actors.append(_Actor("journal", "journal", {**base, "address": journal_address}))
        for i in range(s.workers):
            spec = {**base, "journal": journal_address, "modules": self.modules}
            self._actors.append(_Actor(f"worker-{i}", "worker", spec))
        self._spawn_task(self._receive())
        try:
            await asyncio.gather(*(self._start_actor(a, host) for a in self._actors))
        except BaseException:
            await self._kill_all()
            self._cleanup()
            raise
        self.client = JournalClient(self._ctx, journal_address, hwm=s.high_water_mark,
                                    resend_after=s.resend_after, max_message_size=s.max_message_size)
        self._spawn_task(self._watch_heartbeats())
        log.info("supervisor started %d workers on %s", s.workers, s.store)

    async def _start_actor(self, actor: _Actor, host: str) -> None:
        actor.incarnation += 1
        if actor.role == "worker":
            actor.worker_id = actor.spec["worker_id"] = f"{host}-{actor.name}.{actor.incarnation}"
        else:
            address = actor.spec["address"]
            if address.startswith("ipc://") and os.path.exists(address[6:]):
                os.unlink(address[6:])  # the socket file of a journal that died
        actor.ready = asyncio.get_running_loop().create_future()
        name = f"{actor.name}#{actor.incarnation}"
        actor.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ergon_actors.runtime.actor", actor.role, name, str(os.getpid()),
            json.dumps(actor.spec), stdin=asyncio.subprocess.DEVNULL)
        try:
            await asyncio.wait_for(asyncio.shield(actor.ready), self.settings.ready_timeout)
        except BaseException as exc:
            self._signal(actor, signal.SIGKILL)
            await actor.proc.wait()
            if isinstance(exc, TimeoutError):
                exc = BrokenActorError(f"actor {name} sent no READY within {self.settings.ready_timeout}s",
                                       actor=name, exit_code=actor.proc.returncode)
            raise exc
        actor.last_seen = time.monotonic()
        self._spawn_task(self._watch_exit(actor, actor.proc))
        log.info("actor %s ready (pid %d)", name, actor.proc.pid)

    async def _watch_exit(self, actor: _Actor, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if self._closing or actor.proc is not proc:
            return
        actor.exit_codes.append(code)
        log.warning("actor %s#%d (pid %d) exited with code %s", actor.name, actor.incarnation, proc.pid, code)
        if actor.role == "worker" and self.client is not None:
            self._spawn_task(self._release(actor.worker_id))
        while not self._closing:
            now = time.monotonic()
            self._restart_times.append(now)
            while self._restart_times and self._restart_times[0] < now - self.settings.restart_period:
                self._restart_times.popleft()
            if len(self._restart_times) > self.settings.max_restarts:
                self._fail(RestartIntensityError(actor.name, len(self._restart_times),
                                                 self.settings.restart_period, tuple(actor.exit_codes)))
                return
            actor.restarts += 1
            await asyncio.sleep(min(0.05 * 2 ** (len(self._restart_times) - 1), 2.0))
            try:
                await self._start_actor(actor, self._host)
                return
            except BrokenActorError as exc:
                actor.exit_codes.append(exc.exit_code if exc.exit_code is not None else -1)
                log.warning("restart of actor %s failed: %s", actor.name, exc)

    async def _release(self, worker_id: str) -> None:
        released = await self.client.release_worker(worker_id)
        log.info("released %d flows of dead worker %s", released, worker_id)

    async def _receive(self) -> None:
        by_identity = {}
        while True:
            identity, *frames = await self._ctl.recv_multipart()
            actor = by_identity.get(identity)
            if actor is None or actor.identity != identity:
                actor = next((a for a in self._actors if a.identity == identity), None)
                if actor is None:
                    continue  # a message from an earlier incarnation: ignore it
                by_identity[identity] = actor
            try:
                kind, body = unpack(frames[-1])
            except ProtocolError as exc:
                self.drops.drop(actor.name, exc)
                continue
            actor.last_seen = time.monotonic()
            if kind == "hb":
                actor.stats = body
            elif kind == "ready" and actor.ready is not None and not actor.ready.done():
                actor.flow_types = tuple(body.get("flow_types", ()))
                actor.ready.set_result(body)
            elif kind == "failed" and actor.ready is not None and not actor.ready.done():
                actor.ready.set_exception(BrokenActorError(f"actor {actor.name} failed to start: {body}",
                                                           actor=actor.name))

    async def _watch_heartbeats(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.settings.heartbeat_interval)
            now = time.monotonic()
            for actor in self._actors:
                ready = actor.ready is not None and actor.ready.done()
                if ready and actor.proc.returncode is None and now - actor.last_seen > self.settings.hang_timeout:
                    log.warning("actor %s (pid %d) missed heartbeats for %.1fs; killing it",
                                actor.name, actor.proc.pid, now - actor.last_seen)
                    self._signal(actor, signal.SIGKILL)
                    actor.last_seen = now

    def _fail(self, exc: BaseException) -> None:
        log.error("supervisor giving up: %s", exc)
        self._failure = exc
        self._spawn_task(self.shutdown(grace=0))

    def _spawn_task(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _signal(actor: _Actor, signum: int) -> None:
        if actor.proc is not None and actor.proc.returncode is None:
            try:
                actor.proc.send_signal(signum)
            except ProcessLookupError:
                pass

    async def wait_closed(self) -> None:
        """Wait until the supervisor has shut down; raises what made it give up, if anything."""
        await self._closed.wait()
        if self._failure is not None:
            raise self._failure

    async def shutdown(self, grace: float | None = None) -> None:
        """Drain workers (steps in flight finish within `grace` seconds), then stop the journal.

        Workers still running after the grace period get SIGTERM, then SIGKILL with a warning.
        """
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        grace = self.settings.grace if grace is None else grace
        # Stop watching first: a restart in flight kills and reaps the actor it was starting.
        watchers = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        workers = [a for a in self._actors if a.role == "worker"]
        for actor in workers:
            self._send(actor, "drain", grace)
        await self._stop(workers, grace + 2.0)
        if self.client is not None:
            try:  # flows of workers that had to be killed go back to the queue now
                await asyncio.wait_for(asyncio.gather(*(self.client.release_worker(a.worker_id)
                                                        for a in workers)), 5.0)
            except (TimeoutError, Exception) as exc:
                log.warning("could not release flows at shutdown (%s); their leases will lapse", exc)
            await self.client.close()
        journal = [a for a in self._actors if a.role == "journal"]
        for actor in journal:
            self._send(actor, "stop")
        await self._stop(journal, 5.0)
        self._cleanup()
        self._closed.set()
        log.info("supervisor stopped")

    def _send(self, actor: _Actor, kind: str, body: Any = None) -> None:
        self._ctl.send_multipart((actor.identity, pack(kind, body)))

    async def _stop(self, actors: list[_Actor], timeout: float) -> None:
        """Wait up to `timeout` for the actors to exit, then SIGTERM, then SIGKILL; returns once
        every one is reaped (a SIGKILLed process always goes)."""
        live = [a for a in actors if a.proc is not None and a.proc.returncode is None]
        for signum, wait in ((None, timeout), (signal.SIGTERM, 2.0), (signal.SIGKILL, None)):
            if signum is not None:
                for actor in live:
                    if signum == signal.SIGKILL:
                        log.warning("actor %s (pid %d) ignored SIGTERM; killing it", actor.name, actor.proc.pid)
                    self._signal(actor, signum)
            if live:
                await asyncio.wait([asyncio.ensure_future(a.proc.wait()) for a in live], timeout=wait)
            live = [a for a in live if a.proc.returncode is None]

    async def _kill_all(self) -> None:
        self._closing = True
        for actor in self._actors:
            self._signal(actor, signal.SIGKILL)
        await asyncio.gather(*(a.proc.wait() for a in self._actors if a.proc is not None))

    def _cleanup(self) -> None:
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        self._ctl.close(linger=0)
        self._ctx.term()
        shutil.rmtree(self._run_dir, ignore_errors=True)

    # -- using it --------------------------------------------------------------------------

    async def schedule(self, flow: object, flow_id: str | None = None, *, delay: float | None = None) -> str:
        """Queue a flow (see Scheduler.schedule); returns its flow_id."""
        return await Scheduler(self.client).schedule(flow, flow_id, delay=delay)

    async def wait_for(self, flow_id: str, timeout: float | None = None) -> FlowRecord:
        """Wait until the flow ends; returns its record."""
        return await self.client.wait_for_completion(flow_id, timeout)

    async def result(self, flow_id: str, timeout: float | None = None) -> Any:
        """The flow's result once it completes; FlowFailedError if it failed or was cancelled."""
        return Outcome.of(await self.wait_for(flow_id, timeout)).unwrap()

    async def send_signal(self, name: str, payload: Any = None) -> bool:
        """Deliver a signal to the flow waiting for `name` (now or later); False if already sent."""
        return await self.client.send_signal(name, codec.encode(payload))

    async def cancel(self, flow_id: str) -> str:
        """Cancel a flow and its children; returns its status (RUNNING: stops at its next step)."""
        return await self.client.cancel_flow(flow_id)

    async def wait_until_idle(self, timeout: float | None = None, poll: float = 0.05) -> None:
        """Return once no flow is running and none is due (pending, or a timer that fired).

        Raises:
            UnknownFlowTypeError: flows are due that no worker here serves (they would wait forever).
            TimeoutExpired: still busy after `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        stalled_since = None
        while True:
            counts = await self.client.count_flows(limit=1)
            if counts.get("RUNNING", 0) == 0 and counts.get("due", 0) == 0:
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
                   for f in await self.client.list_flows(status, limit=1000)
                   if f.ready_at is not None and f.ready_at <= now]
        unserved = sorted({f.flow_type for f in waiting} - served)
        if unserved:
            raise UnknownFlowTypeError(", ".join(unserved), tuple(sorted(served)))

    @property
    def journal_address(self) -> str:
        """The ZeroMQ address the journal actor listens on."""
        return next(a.spec["address"] for a in self._actors if a.role == "journal")

    def pids(self) -> dict[str, int]:
        """The pid of every live actor, by name."""
        return {a.name: a.proc.pid for a in self._actors if a.proc is not None and a.proc.returncode is None}

    def worker_ids(self) -> dict[str, str]:
        return {a.name: a.worker_id for a in self._actors if a.role == "worker"}

    def statistics(self) -> SupervisorStatistics:
        """A snapshot: each actor's pid, liveness, restarts, exit codes, memory and own figures."""
        infos = []
        for a in self._actors:
            alive = a.proc is not None and a.proc.returncode is None
            rss = None
            if alive:
                try:
                    rss = psutil.Process(a.proc.pid).memory_info().rss
                except psutil.Error:
                    pass
            ready = alive and a.ready is not None and a.ready.done() and not a.ready.exception()
            infos.append(ActorInfo(a.name, a.role, a.proc.pid if a.proc else None, alive, ready, a.restarts,
                                   tuple(a.exit_codes), rss, dict(a.stats)))
        return SupervisorStatistics(tuple(infos), sum(a.restarts for a in self._actors))
