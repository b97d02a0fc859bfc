"""The supervisor's side of its actor processes: start one and wait for its READY, sample it,
describe it for the snapshot, and stop several in stages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import psutil

from ..core.backoff import Backoff
from ..errors import BrokenActorError
from .actor import EXIT_CONFIG
from .messages import JournalStats, Ready, WorkerStats
from .snapshot import ActorInfo
from .stats import add
from .transport import spawn

__all__ = ["Child", "stop", "kill"]

log = logging.getLogger(__name__)

ENTRY = "ergon_actors.runtime.entry"


@dataclass(eq=False)
class Child:
    """One actor as its supervisor holds it, across its restarts (one process per incarnation)."""

    name: str
    role: str
    worker_id: str | None = None
    incarnation: int = 0
    proc: asyncio.subprocess.Process | None = None
    handle: psutil.Process | None = None
    ready: asyncio.Future[Ready] | None = None  # resolved by READY, failed by a Failed message
    last_seen: float = 0.0
    loop_age: float = 0.0          # seconds the event loop had made no progress, as of the last heartbeat
    idle: bool = False             # its last heartbeat said it had no work in hand
    stats: WorkerStats | JournalStats | None = None
    restarts: int = 0
    flow_types: tuple[str, ...] = ()
    exit_codes: deque[int] = field(default_factory=lambda: deque(maxlen=10))
    rss_bytes: int | None = None
    cpu_percent: float | None = None
    cpu_seconds: float = 0.0       # CPU time the process has used, as last sampled
    cpu_moved: float = 0.0         # monotonic time the process was last seen using CPU (or started)
    sampled: float = 0.0           # monotonic time of the last sample
    stopped: bool = False          # last sampled in the stopped state (SIGSTOP)
    kill_cause: str | None = None  # why the supervisor killed this incarnation ("hang", "memory")
    recycling: str | None = None   # why this incarnation drains to be replaced ("memory", "flows")
    recycle_by: float = 0.0        # monotonic time by which a recycled incarnation must be gone
    last_death: float = 0.0        # monotonic time of the last unplanned death
    backoff: Backoff = field(default_factory=lambda: Backoff(0.05, 2.0))  # before a restart
    carried: WorkerStats | JournalStats | None = None  # the counts of its earlier incarnations, summed
    causes: dict[str, int] = field(default_factory=dict)  # its restarts by cause

    @property
    def label(self) -> str:
        """NAME#INCARNATION: the process's name in logs and its identity on the control socket."""
        return f"{self.name}#{self.incarnation}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def is_ready(self) -> bool:
        return (self.alive and self.ready is not None and self.ready.done() and not self.ready.cancelled()
                and self.ready.exception() is None)

    async def start(self, spec_path: str, ready_timeout: float) -> None:
        """Start the next incarnation and wait for its READY, its exit or `ready_timeout`.

        Raises:
            BrokenActorError: it failed to start (its reason), exited first (its exit code) or
                sent nothing in time; the process is killed and reaped first.
        """
        self.ready = asyncio.get_running_loop().create_future()
        if self.stats is not None:
            self.carried = add(self.carried, self.stats)
        self.stats, self.loop_age, self.idle = None, 0.0, False
        self.kill_cause = self.recycling = None
        self.proc = await spawn([sys.executable, "-m", ENTRY, self.role, self.label, spec_path])
        try:
            self.handle = psutil.Process(self.proc.pid)
        except psutil.Error:
            self.handle = None
        try:
            await self._wait_ready(ready_timeout)
        except BaseException:
            self.ready.cancel()
            await kill([self])
            raise
        self.last_seen = self.cpu_moved = self.sampled = time.monotonic()
        self.cpu_seconds, self.stopped = self._cpu_used(), False

    def _cpu_used(self) -> float:
        """The CPU seconds the process has used so far (0.0 if it cannot be read)."""
        try:
            times = self.handle.cpu_times() if self.handle is not None else None
        except psutil.Error:
            return 0.0
        return 0.0 if times is None else times.user + times.system

    async def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None and self.ready is not None
        exited = asyncio.ensure_future(self.proc.wait())
        first: set[asyncio.Future[Any]] = {self.ready, exited}
        try:
            await asyncio.wait(first, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if exited.done() and self.proc.returncode == EXIT_CONFIG and not self.ready.done():
                await asyncio.wait({self.ready}, timeout=1.0)  # its Failed message may trail the exit
        finally:
            exited.cancel()
        if self.ready.done():
            self.ready.result()  # raises BrokenActorError after a Failed message
            return
        code = self.proc.returncode
        if code is not None:
            raise BrokenActorError(f"actor {self.label} exited with code {code} before READY", actor=self.label,
                                   exit_code=code)
        raise BrokenActorError(f"actor {self.label} sent no READY within {timeout:g}s", actor=self.label)

    def count_restart(self, cause: str) -> None:
        self.restarts += 1
        self.causes[cause] = self.causes.get(cause, 0) + 1

    def death_cause(self, code: int) -> str:
        """Why the incarnation that ended with return code `code` did: "recycle" (drained to be
        replaced), the supervisor's reason to kill it ("hang", "memory"), else "signal" (killed
        by a signal) or "exit" (exited by itself)."""
        if self.recycling is not None and code == 0:
            return "recycle"
        if self.kill_cause is not None:
            return self.kill_cause
        return "signal" if code < 0 else "exit"

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def sample(self) -> None:
        """Read the process's memory and CPU use (CPU: since the previous sample, in % of a core),
        whether it is stopped, and when it last used CPU."""
        self.rss_bytes = self.cpu_percent = None
        if self.handle is not None and self.alive:
            try:
                with self.handle.oneshot():
                    self.rss_bytes = self.handle.memory_info().rss
                    times = self.handle.cpu_times()
                    self.stopped = self.handle.status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
            except psutil.Error:
                return
            now, used = time.monotonic(), times.user + times.system
            self.cpu_percent = round(100 * max(0.0, used - self.cpu_seconds) / max(now - self.sampled, 1e-3), 1)
            if used > self.cpu_seconds:
                self.cpu_seconds, self.cpu_moved = used, now
            self.sampled = now

    def info(self, now: float) -> ActorInfo:
        return ActorInfo(self.name, self.role, self.pid, self.incarnation, self.worker_id, self.alive, self.is_ready,
                         self.restarts, tuple(self.exit_codes),
                         round(now - self.last_seen, 3) if self.last_seen else None, self.stats,
                         self.rss_bytes, self.cpu_percent,
                         self.carried if self.stats is None else add(self.carried, self.stats), dict(self.causes))


async def _exited(children: list[Child], timeout: float, hurry: asyncio.Event) -> list[Child]:
    """Wait until the children exited, `timeout` passed or `hurry` was set; returns the live ones."""
    live = [c for c in children if c.alive]
    if live and timeout > 0 and not hurry.is_set():
        exits = asyncio.ensure_future(asyncio.gather(*(c.proc.wait() for c in live if c.proc)))
        hurried = asyncio.ensure_future(hurry.wait())
        either: set[asyncio.Future[Any]] = {exits, hurried}
        await asyncio.wait(either, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for future in either:
            future.cancel()
        await asyncio.gather(*either, return_exceptions=True)
    return [c for c in live if c.alive]


async def stop(children: list[Child], timeout: float, hurry: asyncio.Event) -> None:
    """Wait up to `timeout` for the children to exit, then SIGTERM, then SIGKILL (at once once
    `hurry` is set); returns once every one is reaped (a SIGKILLed process always goes)."""
    live = await _exited(children, timeout, hurry)
    if live and not hurry.is_set():
        for child in live:
            child.signal(signal.SIGTERM)
        live = await _exited(live, 2.0, hurry)
    for child in live:
        if not hurry.is_set():
            log.warning("actor %s (pid %s) ignored SIGTERM; killing it", child.label, child.pid)
    await kill(live)


async def kill(children: list[Child]) -> None:
    """SIGKILL the children and reap them."""
    for child in children:
        child.signal(signal.SIGKILL)
    await asyncio.gather(*(c.proc.wait() for c in children if c.proc is not None))
