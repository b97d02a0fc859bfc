"""The supervisor's rules for its workers' deaths and limits: how a death is described to the
store, which deaths count toward the restart intensity, and when a worker is recycled or killed
for its memory or its number of flows."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import psutil

from ..config import Settings
from ..core import FlowRecord
from ..errors import ErgonError, RestartIntensityError
from ..storage.base import LogBase
from .children import Child
from .messages import WorkerStats
from .snapshot import Snapshot

__all__ = ["HARD_RSS", "RECYCLE_MARGIN", "RECORD_TIMEOUT", "death", "record_crash", "RestartWindow", "limit_action",
           "hang", "release_dead", "sample_due"]

log = logging.getLogger(__name__)

HARD_RSS = 1.5        # a worker past max_rss times this is killed at once
RECYCLE_MARGIN = 5.0  # seconds beyond grace a recycled worker has to exit before it is killed
RECORD_TIMEOUT = 10.0  # seconds a dead worker's restart waits for its crash to be recorded


def death(code: int, kill_cause: str | None) -> tuple[int | None, int | None, str]:
    """(exit code, signal, cause) of a worker process that ended with return code `code`;
    `kill_cause` is why the supervisor killed it, if it did ("hang", "memory")."""
    if code < 0:
        return None, -code, kill_cause or "signal"
    return code, None, kill_cause or "exit"


async def record_crash(store: LogBase, worker_id: str, code: int, kill_cause: str | None,
                       max_crashes: int) -> list[FlowRecord] | None:
    """Record a worker's death on the flows it held; returns them, or None if the journal did not
    confirm it within RECORD_TIMEOUT (the record is still delivered once the journal answers)."""
    exit_code, signum, cause = death(code, kill_cause)
    recording = asyncio.ensure_future(store.record_crash(worker_id, exit_code, signum, cause, max_crashes))
    try:
        flows = await asyncio.wait_for(asyncio.shield(recording), RECORD_TIMEOUT)
    except TimeoutError:
        log.warning("no answer from the journal within %gs to the crash of worker %s; it counts toward "
                    "the restart intensity", RECORD_TIMEOUT, worker_id)
        return None
    except ErgonError as exc:
        log.warning("could not record the crash of worker %s: %s: %s", worker_id, type(exc).__name__, exc)
        return None
    log.info("recorded the crash (%s) of worker %s on %d flows", cause, worker_id, len(flows))
    return flows


class RestartWindow:
    """The deaths that count toward the restart intensity within the last `period` seconds."""

    def __init__(self, max_restarts: int, period: float) -> None:
        self.max_restarts = max_restarts
        self.period = period
        self._exits: deque[tuple[float, str, int]] = deque()

    def add(self, name: str, code: int) -> RestartIntensityError | None:
        """Count one death; returns the error to give up with once there are too many."""
        now = time.monotonic()
        self._exits.append((now, name, code))
        while self._exits and self._exits[0][0] < now - self.period:
            self._exits.popleft()
        if len(self._exits) > self.max_restarts:
            return RestartIntensityError(tuple((n, c) for _, n, c in self._exits), self.period)
        return None


async def release_dead(store: LogBase, dead: list[Snapshot], store_url: str, wait: float = 2.0) -> int:
    """Release, on `store`, the flows still leased to the workers of supervisors that died on this
    machine (their run directories were left behind, so they were killed: SIGKILL, a crash).

    A worker is released only once its process is gone (they die with their supervisor within a
    second); one still running after `wait` seconds keeps its leases until they lapse. Returns
    the flows released.
    """
    workers = [(snap.run_dir, a) for snap in dead if snap.store == store_url
               for a in snap.actors if a.role == "worker" and a.worker_id]
    deadline = time.monotonic() + wait
    released = 0
    for run_dir, actor in workers:
        while _still_runs(actor.pid, run_dir) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if _still_runs(actor.pid, run_dir):
            continue
        assert actor.worker_id is not None
        try:
            released += await store.release_worker(actor.worker_id)
        except ErgonError as exc:
            log.warning("could not release the flows of dead worker %s: %s", actor.worker_id, exc)
    if released:
        log.info("released %d flows held by the workers of a supervisor that died on this machine", released)
    return released


def _still_runs(pid: int | None, run_dir: str) -> bool:
    """Whether the actor process `pid` of the run directory `run_dir` still runs (its command
    line names its spec file in that directory, so a reused pid does not count)."""
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and any(run_dir in arg for arg in process.cmdline())
    except psutil.Error:
        return False


def sample_due(actor: Child, now: float, settings: Settings, idle_every: float) -> bool:
    """Whether to read an actor's memory and CPU now: every heartbeat interval while it is busy
    or late with its heartbeat (the hang rule needs fresh figures), every `idle_every` seconds
    while it is idle."""
    if not actor.alive:
        return False
    if not actor.idle or now - actor.last_seen > settings.idle_beat + settings.heartbeat_interval:
        return True
    return now - actor.sampled >= idle_every - settings.heartbeat_interval / 2


def hang(actor: Child, now: float, settings: Settings) -> str | None:
    """Why a READY actor counts as hung now, or None.

    Frozen: no heartbeat for `hang_timeout` seconds while its process is stopped (SIGSTOP) or
    used no CPU meanwhile (the heartbeat thread is silent too). A process that is silent but
    busy (a step holding the interpreter in one long C call) is judged by the loop rule instead.
    Blocked: its event loop made no progress for `loop_timeout` (a step blocks the loop, e.g.
    by calling time.sleep), as its heartbeats tell, or no heartbeat at all for that long.
    """
    silent = now - actor.last_seen
    if silent > settings.hang_timeout and (actor.stopped or now - actor.cpu_moved > settings.hang_timeout):
        state = "stopped" if actor.stopped else "using no CPU"
        return f"it sent no heartbeat for {silent:.1f}s and is {state} (frozen)"
    stuck = max(actor.loop_age + silent, silent)
    if stuck > settings.loop_timeout:
        return f"its event loop made no progress for {stuck:.1f}s (a step blocks it?)"
    return None


def limit_action(worker: Child, settings: Settings, now: float) -> tuple[str, str, str] | None:
    """What a worker's limits ask for now, from its last sample and heartbeat: ("kill", cause,
    why), ("recycle", cause, why) or None. Cause "memory" for max_rss, "flows" for max_flows
    ("hang" when a recycle for flows did not end in time)."""
    rss, max_rss = worker.rss_bytes, settings.max_rss
    if max_rss and rss is not None and rss > max_rss * HARD_RSS:
        return "kill", "memory", f"its RSS {rss / 2**20:.0f} MB is past {HARD_RSS:g} x max_rss"
    if worker.recycling is not None:
        if now > worker.recycle_by:
            cause = "memory" if worker.recycling == "memory" else "hang"
            return "kill", cause, f"it did not drain within {settings.grace + RECYCLE_MARGIN:g}s of its recycle"
        return None
    if max_rss and rss is not None and rss > max_rss:
        return "recycle", "memory", f"its RSS {rss / 2**20:.0f} MB is over max_rss {max_rss / 2**20:.0f} MB"
    stats = worker.stats
    if settings.max_flows and isinstance(stats, WorkerStats) and stats.finished >= settings.max_flows:
        return "recycle", "flows", f"it finished {stats.finished} flows (max_flows {settings.max_flows})"
    return None
