"""Store faults of a chaos run: a stalled redis-server (SIGSTOP, then SIGCONT) and a full disk
under a SQLite store (the store on a small tmpfs the run mounts, filled up, then emptied).

Mounting needs root; where the run cannot mount, the disk-full fault is left out and the report
says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

from .procs import RedisServer
from .report import FaultRecord

__all__ = ["DiskFull", "DISK_SIZE", "hold_store", "disk_notes"]

log = logging.getLogger(__name__)

DISK_SIZE = 64 * 2**20  # bytes of the tmpfs that holds the store
CHUNK = 2**20


class DiskFull:
    """A tmpfs of its own that holds the store: `fill()` takes every free byte, `drain()` frees them.

        disk = DiskFull(work / "disk")
        reason = disk.mount()        # None once mounted, else why it cannot be
        disk.fill(); disk.drain()
        disk.unmount()
    """

    def __init__(self, path: Path, size: int = DISK_SIZE) -> None:
        self.path = Path(path)
        self.size = size
        self.mounted = False
        self._filler = self.path / "filler"

    def mount(self) -> str | None:
        """Mount the tmpfs; returns None, or why it could not be mounted (not root, no mount)."""
        if os.geteuid() != 0:
            return "the run is not root, so it cannot mount a small tmpfs to fill"
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700", "tmpfs",
                                   str(self.path)], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"mount could not be run: {exc}"
        if done.returncode != 0:
            return f"mount -t tmpfs failed: {done.stderr.strip() or done.returncode}"
        self.mounted = True
        return None

    def fill(self) -> int:
        """Write a file until the disk is full; returns the bytes it took."""
        taken = 0
        with open(self._filler, "ab", buffering=0) as f:
            for chunk in (CHUNK, 4096, 512):
                block = b"\0" * chunk
                while True:
                    try:
                        taken += f.write(block) or 0
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        return taken

    def drain(self) -> None:
        """Free what fill() took."""
        self._filler.unlink(missing_ok=True)

    def unmount(self, keep: Path | None = None) -> None:
        """Unmount the tmpfs (lazily if a process still holds a file on it), after copying the
        files on it, the filler aside, into `keep`."""
        if not self.mounted:
            return
        self.drain()
        if keep is not None:
            for path in self.path.iterdir():
                if path.is_file():
                    shutil.copy2(path, keep / path.name)
        done = subprocess.run(["umount", str(self.path)], capture_output=True, timeout=10)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=10)
        self.mounted = False


async def hold_store(kind: str, pause: float, redis: RedisServer | None,
                     disk: DiskFull | None) -> tuple[str, str, Callable[[], None]]:
    """Stall redis-server (SIGSTOP) or fill the store's disk; returns the target, a note, and
    what ends the fault."""
    if kind == "stall-redis":
        assert redis is not None and redis.pid is not None  # planned only on a Redis of its own
        proc = psutil.Process(redis.pid)
        proc.send_signal(signal.SIGSTOP)

        def undo() -> None:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGCONT)
        return f"redis-server (pid {proc.pid})", f"stopped {pause:.1f}s", undo
    assert disk is not None  # planned only once the run mounted its disk
    taken = await asyncio.to_thread(disk.fill)
    return f"the store's disk ({disk.path})", f"{taken / 2**20:.1f} MB taken for {pause:.1f}s", disk.drain


def disk_notes(faults: Iterable[tuple[FaultRecord, bool]]) -> list[str]:
    """For each disk-full fault (with whether the journal was seen failing meanwhile), a note: a
    full disk fails a commit only when the file must grow (a stalled Redis fails none: commits wait)."""
    notes = []
    for record, failed in faults:
        if record.kind == "disk-full":
            seen = "seen waiting out" if failed else "not seen failing on"
            notes.append(f"{record.kind} at {record.at:.1f}s: the journal was {seen} its store")
    return notes
