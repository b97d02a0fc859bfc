"""The actor base: one process, its link to the supervisor, READY, heartbeats, drain and stop.

A subclass (the journal, the worker) holds only its own work, in four hooks:

- `on_start()`: open what the actor needs. An exception here is reported to the supervisor as
  `Failed` and the process exits 78; once it returns, the base sends `Ready`.
- `on_message()`: the actor's `inbox` socket has messages; take and handle them. The loop owns
  the inbox's file descriptor: read and write it through a plain shadow (`zmq.Socket.shadow`),
  never zmq.asyncio futures, and follow a send from elsewhere (another task) by `rouse()`.
- `on_tick()`: called at each beat (below) on the actor's loop; raise to crash the actor.
- `busy()`: whether the actor has work in hand; an idle one beats less often.
- `on_stop(grace)`: stop taking work, give work in flight `grace` seconds; returns how many
  flows were cut mid-step. Resources are closed by `resources` (an AsyncExitStack), which runs
  on every way out, a crash included.

The base sends a `Heartbeat` every beat from a thread of its own, so a busy or blocked event
loop never silences it: a heartbeat says the process is alive. A beat is the heartbeat
interval while the actor is busy, and `Settings.idle_beat` (1 s, at most half of
`hang_timeout`) while it is idle: an idle actor's thread and loop each wake once a second, and
it never looks silent to the supervisor. Each heartbeat carries the `statistics()`, whether the
actor is idle, and the age of the loop's last sign of progress (a task on the loop notes the
time every beat): the supervisor kills an actor whose heartbeats stop while it is stopped or
idle (frozen) after `hang_timeout`, and one whose loop made no progress (a step blocking it)
after `loop_timeout`. `Drain(grace)` or SIGTERM (with the configured grace) ends the loop and
drains; `Stop` does so with no grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import threading
import time
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, cast

import zmq
import zmq.asyncio

from ..config import Settings
from ..errors import ProtocolError
from ..storage.base import LogBase
from .drops import DropCounter
from .messages import (Drain, Drained, Failed, Heartbeat, JournalStats, Message, Ready, Stop, WorkerStats,
                       decode, encode)
from .rundir import write_private
from .transport import make_socket

__all__ = ["Actor", "ActorSpec", "StoreWrapper", "SupervisorLink", "Beats", "BEAT_SUFFIX", "EXIT_OK", "EXIT_CRASHED",
           "EXIT_CONFIG", "EXIT_STORE"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CRASHED = 1   # an unexpected error (logged with its traceback)
EXIT_CONFIG = 78   # could not start: the supervisor got a Failed message saying why
EXIT_STORE = 74    # the journal's store is broken (corrupt): a restart cannot help
BEAT_SUFFIX = "/beat"  # the heartbeat socket's identity: the actor's name and this


@dataclass(frozen=True, slots=True)
class StoreWrapper:
    """A callable the journal applies to its store, `target(store, argument)`, named "module:name".

    For test harnesses only (the chaos verifier's deliberately broken stores): it is a Python
    argument of `Supervisor`, never a setting or an environment variable.
    """

    target: str
    argument: str = ""

    def apply(self, store: LogBase) -> LogBase:
        module, _, name = self.target.partition(":")
        wrapped: LogBase = getattr(importlib.import_module(module), name)(store, self.argument)
        return wrapped


@dataclass(frozen=True, slots=True)
class ActorSpec:
    """What an actor process needs to start.

    The supervisor writes it to a 0600 file in its 0700 run directory and passes only the
    file's path on the command line: it holds the store URL, which may hold a password.
    """

    role: str
    name: str            # NAME#INCARNATION, also the actor's identity on the supervisor's socket
    parent_pid: int
    supervisor: str      # the supervisor's control address
    journal: str         # the journal's address
    settings: Settings
    modules: tuple[str, ...] = ()
    worker_id: str = ""
    sys_path: tuple[str, ...] = ()
    log_level: str = "WARNING"
    store_wrapper: StoreWrapper | None = None

    def write(self, path: str) -> None:
        """Write the spec to `path` (mode 0600), replacing any earlier one at once."""
        write_private(path, json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: str) -> ActorSpec:
        with open(path) as f:
            data: dict[str, Any] = json.load(f)
        wrapper = data.pop("store_wrapper")
        return cls(**{**data, "settings": Settings(**data["settings"]), "modules": tuple(data["modules"]),
                      "sys_path": tuple(data["sys_path"]),
                      "store_wrapper": StoreWrapper(**wrapper) if wrapper else None})


class SupervisorLink:
    """DEALER socket to the supervisor's ROUTER; its identity is the actor's NAME#INCARNATION."""

    def __init__(self, ctx: zmq.asyncio.Context, address: str, name: str) -> None:
        self.name = name
        self.sock = make_socket(ctx, zmq.DEALER, 1000, identity=name.encode())
        self.sock.connect(address)
        self.raw: zmq.Socket[bytes] = zmq.Socket.shadow(self.sock.underlying)  # the actor's loop reads it

    def send(self, message: Message) -> None:
        """Send `message` now (the actor's loop owns the socket's wake-ups: no zmq.asyncio future)."""
        try:
            self.raw.send(encode(message), zmq.NOBLOCK)
        except zmq.Again:  # 1000 messages the supervisor has not read: it is gone or stuck
            log.warning("actor %s: the supervisor is not reading; %s not sent", self.name, type(message).__name__)


class Actor:
    """The base of the journal and worker actors; `await actor.run()` is the whole process."""

    role: ClassVar[str] = ""

    def __init__(self, spec: ActorSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.settings = spec.settings
        self.ctx = zmq.asyncio.Context()
        self.link = SupervisorLink(self.ctx, spec.supervisor, spec.name)
        self.inbox: zmq.asyncio.Socket | None = None
        self.resources = AsyncExitStack()
        self.drops = DropCounter(log, self.role or spec.name)  # malformed messages, from any peer
        self._grace: float | None = None  # set once a stop was asked for
        # set by the sockets' file descriptors, by stop() and by rouse(): the loop looks again
        self._woken = asyncio.Event()
        self._loop_seen = time.monotonic()  # when the loop last showed progress
        self._stats: WorkerStats | JournalStats | None = None  # the figures as of then
        self.beat = self.settings.heartbeat_interval  # seconds between beats: longer while idle
        self._idle = False  # as of the last beat
        self._crash: BaseException | None = None  # what on_tick() raised: the loop raises it

    # -- hooks -----------------------------------------------------------------------------

    async def on_start(self) -> None:
        """Open what the actor needs; raise to fail the start."""

    async def on_message(self) -> None:
        """The inbox has messages: take and handle them."""

    async def on_tick(self) -> None:
        """Periodic work, at each beat; raise to crash the actor."""

    async def on_stop(self, grace: float) -> int:
        """Stop taking work and finish within `grace` seconds; returns the flows cut mid-step."""
        return 0

    def ready(self) -> Ready:
        """The READY message sent once on_start() returned."""
        return Ready(os.getpid())

    def statistics(self) -> WorkerStats | JournalStats:
        """The figures each heartbeat carries."""
        raise NotImplementedError

    def busy(self) -> bool:
        """Whether the actor worked since the last beat or has work in hand (asked once a beat)."""
        return True

    # -- the loop --------------------------------------------------------------------------

    def stop(self, grace: float) -> None:
        """Ask the loop to end and drain with `grace` seconds (the shortest grace asked wins)."""
        self._grace = grace if self._grace is None else min(self._grace, grace)
        self._woken.set()  # stop() runs on the loop (a message, a SIGTERM handler, a tick)

    def rouse(self) -> None:
        """Make the loop look at its sockets again: call after sending on the inbox outside
        on_message, since a send can take the wake-up of a message that arrived meanwhile."""
        self._woken.set()

    async def run(self) -> int:
        """Start, serve until asked to stop, drain; returns the process exit code."""
        try:
            async with self.resources:
                try:
                    await self.on_start()
                except Exception as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                    log.error("actor %s cannot start: %s", self.name, reason)
                    self.link.send(Failed(reason))
                    return EXIT_CONFIG
                loop = asyncio.get_running_loop()
                loop.add_signal_handler(signal.SIGTERM, self.stop, self.settings.grace)
                self._stats, self._loop_seen = self.statistics(), time.monotonic()
                self.link.send(self.ready())
                progress = loop.create_task(self._progress())
                beats = Beats(self)
                try:
                    await self._serve()
                    grace = self._grace if self._grace is not None else 0.0
                    self.link.send(Drained(await self.on_stop(grace)))
                finally:
                    beats.stop()
                    progress.cancel()
                return EXIT_OK
        finally:
            self.link.sock.close(linger=500)  # let Failed or Drained reach a live supervisor
            self.ctx.destroy(linger=0)

    async def _progress(self) -> None:
        """At each beat: note that the loop runs and the figures as of now, choose the next beat
        (longer while idle) and run on_tick(); what that raises ends the loop."""
        s = self.settings
        while True:
            self._stats = self.statistics()
            self._loop_seen = time.monotonic()
            self._idle = not self.busy()
            self.beat = s.idle_beat if self._idle else s.heartbeat_interval
            try:
                await self.on_tick()
            except Exception as exc:
                self._crash = exc
                self.stop(0.0)
                return
            await asyncio.sleep(self.beat)

    def heartbeat(self) -> Heartbeat | None:
        """The heartbeat to send now (from the beat thread); None before the loop's first note."""
        stats = self._stats
        if stats is None:
            return None
        return Heartbeat(stats, round(max(0.0, time.monotonic() - self._loop_seen), 3), self._idle)

    async def _serve(self) -> None:
        """Handle the supervisor's messages and the inbox's until a stop is asked for.

        The loop watches each socket's file descriptor itself, with no future per wait. The
        descriptor is edge-triggered (it fires when the socket's state may have changed, and any
        call on the socket, a send included, can consume that), so every pass reads each socket's
        EVENTS and the loop sleeps only after a pass that found nothing to read.
        """
        loop = asyncio.get_running_loop()
        watched = [(self.link.raw, self._control)]
        if self.inbox is not None:
            watched.append((zmq.Socket.shadow(self.inbox.underlying), self.on_message))
        fds = [cast(int, raw.getsockopt(zmq.FD)) for raw, _ in watched]
        for fd in fds:
            loop.add_reader(fd, self._woken.set)
        try:
            while self._grace is None:
                self._woken.clear()
                handled = False
                for raw, handle in watched:
                    if self._grace is None and cast(int, raw.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                        handled = True
                        await handle()
                if handled:
                    await asyncio.sleep(0)  # the loop's other tasks run between two busy passes
                else:
                    await self._woken.wait()
        finally:
            for fd in fds:
                loop.remove_reader(fd)
        if self._crash is not None:
            raise self._crash

    async def _control(self) -> None:
        while True:
            try:
                frame = self.link.raw.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                message = decode(frame)
            except ProtocolError as exc:
                self.drops.drop("supervisor", exc)
                continue
            if isinstance(message, Drain):
                log.info("actor %s draining (grace %.3gs)", self.name, message.grace)
                self.stop(message.grace)
            elif isinstance(message, Stop):
                log.info("actor %s stopping on request", self.name)
                self.stop(0.0)


class Beats:
    """The thread that sends an actor's heartbeats on a socket of its own, whatever its loop does.

    Its socket's identity is the actor's NAME#INCARNATION followed by BEAT_SUFFIX.
    """

    def __init__(self, actor: Actor) -> None:
        self._actor = actor
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeats", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        actor = self._actor
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.shadow(actor.ctx.underlying)
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, (actor.name + BEAT_SUFFIX).encode())
        sock.setsockopt(zmq.SNDHWM, 100)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(actor.spec.supervisor)
        try:
            while not self._done.is_set():
                beat = actor.heartbeat()
                if beat is not None:
                    with contextlib.suppress(zmq.Again):  # the supervisor is not reading: a later beat will do
                        sock.send(encode(beat), zmq.NOBLOCK)
                self._done.wait(actor.beat)
        finally:
            sock.close(linger=0)

    def stop(self) -> None:
        """End the thread and wait for it (its socket is closed before the context is)."""
        self._done.set()
        self._thread.join(5.0)
