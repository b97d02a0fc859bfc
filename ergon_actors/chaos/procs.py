"""The processes a chaos run starts and hits: the supervisor under test, its actors, redis-server.

Every process is addressed by pid through a psutil handle, which refuses to signal a pid that
was reused by another process. Processes started here get SIGKILL when the chaos process dies
(PR_SET_PDEATHSIG), so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..errors import ErgonError
from ..runtime import rundir
from ..runtime.snapshot import Snapshot
from ..runtime.transport import kill_with_parent
from .marks import KillMarks

__all__ = ["ChaosError", "Actor", "SupervisorProcess", "RedisServer", "still_alive"]

class ChaosError(ErgonError):
    """Raised when a chaos run cannot be carried out (bad arguments, a process that will not start)."""


@dataclass(frozen=True, slots=True)
class Actor:
    """A live actor process of the supervisor: its role, name, worker_id and psutil handle."""

    role: str
    name: str
    worker_id: str | None
    proc: psutil.Process

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def signal(self, signum: int) -> bool:
        """Send a signal; False if the process is gone (its pid is never reused for another)."""
        try:
            self.proc.send_signal(signum)
            return True
        except psutil.Error:
            return False


def still_alive(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still running (zombies count as gone) after waiting up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.Error:
                pass
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


class SupervisorProcess:
    """The supervisor under test (ergon_actors.chaos.supervise) as a child process; restartable.

    Each incarnation logs to its own file in `work_dir`. Its actors, their worker ids and the
    writes its journal refused are read from the status snapshot it keeps in its run directory.
    `marks` tells it which worker deaths the harness caused (chaos.marks).
    """

    def __init__(self, modules: list[str], store: str, workers: int, env: dict[str, str],
                 work_dir: Path, grace: float, fault_plan: str = "") -> None:
        self.command = [sys.executable, "-m", "ergon_actors.chaos.supervise", *modules, "--store", store,
                        "--workers", str(workers), "--grace", str(grace)]
        self.marks = KillMarks(work_dir / "kill-marks")
        self.command += ["--kill-marks", str(self.marks.directory)]
        if fault_plan:
            self.command += ["--fault-plan", fault_plan]
        self.env = env
        self.work_dir = work_dir
        self.incarnation = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.handle: psutil.Process | None = None
        self.expected_exit = False
        self._run_dir: str | None = None
        self._fenced: dict[tuple[int, int], int] = {}  # (incarnation, journal pid) -> writes refused

    @property
    def log_path(self) -> Path:
        return self.work_dir / f"supervisor-{self.incarnation}.log"

    @property
    def pid(self) -> int:
        """The current incarnation's pid."""
        assert self.proc is not None, "the supervisor was never started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        self.observe()
        self.incarnation += 1
        self._run_dir = None
        self.expected_exit = False
        with open(self.log_path, "wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=kill_with_parent, start_new_session=True)
        self.handle = psutil.Process(self.proc.pid)

    def snapshot(self) -> Snapshot | None:
        """The current incarnation's last status snapshot (None before it wrote one)."""
        if not self.running or self.proc is None:
            return None
        if self._run_dir is None:
            for path in rundir.live():
                snap = rundir.read_snapshot(path)
                if snap is not None and snap.pid == self.proc.pid:
                    self._run_dir = path
                    return snap
            return None
        return rundir.read_snapshot(self._run_dir)

    def observe(self) -> Snapshot | None:
        """Read the snapshot and keep the journal's count of refused writes."""
        snap = self.snapshot()
        if snap is not None:
            for info in snap.actors:
                if info.role == "journal" and info.pid is not None:
                    key = (self.incarnation, info.pid)
                    self._fenced[key] = max(self._fenced.get(key, 0), snap.journal.fenced)
        return snap

    @property
    def refused(self) -> int:
        """Writes the journal refused for a stale epoch, over every incarnation so far (as last
        reported: a journal killed between two snapshots takes its latest refusals along)."""
        self.observe()
        return sum(self._fenced.values())

    def actors(self, ready_only: bool = True) -> list[Actor]:
        """The current incarnation's live actors (READY ones only, by default), by name.

        READY ones are listed only once the supervisor has started its whole pool: an actor
        that dies while `Supervisor.start()` is still waiting for the others is not restarted.
        """
        snap = self.observe()
        if snap is None or self.handle is None or (ready_only and snap.state != "running"):
            return []
        try:
            children = {p.pid: p for p in self.handle.children()}
        except psutil.Error:
            return []
        found = [Actor(info.role, info.name, info.worker_id, children[info.pid]) for info in snap.actors
                 if info.pid in children and info.alive and (info.ready or not ready_only)]
        return sorted(found, key=lambda a: a.name)

    def descendants(self) -> list[psutil.Process]:
        if not self.running or self.handle is None:  # the handle is set with proc
            return []
        try:
            return self.handle.children(recursive=True)
        except psutil.Error:
            return []

    async def kill(self) -> list[psutil.Process]:
        """SIGKILL the supervisor alone; returns its descendants as they were just before."""
        before = self.descendants()
        self.expected_exit = True
        assert self.proc is not None, "kill() before start()"
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        return before

    async def kill_tree(self) -> list[psutil.Process]:
        """SIGKILL the supervisor and every process under it at once, as when its machine is
        lost; returns them."""
        procs = [p for p in [self.handle, *self.descendants()] if p is not None]
        self.expected_exit = True
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        if self.proc is not None:
            await self.proc.wait()
        return procs

    async def stop(self, timeout: float) -> list[psutil.Process]:
        """SIGTERM (the supervisor drains), then SIGKILL after `timeout`; returns its descendants."""
        before = self.descendants()
        if self.proc is None or not self.running:
            return before
        self.expected_exit = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        return before


class RedisServer:
    """A redis-server of our own: loopback, a free port, AOF with appendfsync always.

        server = RedisServer(directory).start()   # blocks until it answers PING
        server.kill()                              # SIGKILL, as a crash would
        server.start()                             # the same port and directory: replays its AOF
        server.stop()                              # SIGTERM, then SIGKILL after a grace period

    It dies with the process that started it. Used by chaos runs, the tests and the benchmark.
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        if port is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        self.port = port
        self.log_path = self.directory / "redis-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def find() -> str:
        """The redis-server binary (ChaosError if it is not on PATH)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise ChaosError("redis-server is not on PATH (Debian: apt-get install redis-server; "
                             "./scripts/test.sh installs it when it can)")
        return binary

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self, deadline: float = 15.0) -> RedisServer:
        """Start it and wait until it answers PING (ChaosError naming its log if it does not)."""
        if self.proc is not None and self.proc.poll() is None:
            raise ChaosError(f"redis-server already running as pid {self.proc.pid}")
        command = [self.find(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory),
                   "--daemonize", "no"]
        # The parent-death signal follows the thread that forks: ask for it only from the main
        # thread, which lives as long as the process (a pool thread may end at any time).
        main = threading.current_thread() is threading.main_thread()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=kill_with_parent if main else None, start_new_session=True)
        until = time.monotonic() + deadline
        while not _ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > until:
                self.kill()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise ChaosError(f"redis-server did not start on port {self.port}; its log "
                                 f"({self.log_path}):\n{tail}")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown, no final fsync."""
        self._end(signal.SIGKILL, 0.0)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited after `grace` seconds; waits for the exit."""
        self._end(signal.SIGTERM, grace)

    def _end(self, signum: int, grace: float) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signum)
            try:
                proc.wait(grace or None)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)


def _ping(port: int) -> bool:
    """True once the server answers PING with PONG (not while it is still loading its AOF)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False
