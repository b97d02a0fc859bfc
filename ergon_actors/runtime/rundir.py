"""Run directories: a supervisor's private folder for its sockets, actor specs and status snapshot.

Each is `ergon-run-*` in the temp folder, mode 0700, with an `owner` file naming the pid and
start time of the supervisor that made it. A supervisor that was SIGKILLed cannot remove its
own; the next one to start on the same store removes it, and releases the flows its workers
still held (see limits.release_dead). Others leave it for that one, for up to KEEP_FOREIGN
seconds, then remove it too.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import tempfile
import time

import psutil

from .snapshot import Snapshot

__all__ = ["create", "remove_dead", "live", "write_snapshot", "read_snapshot", "snapshots", "write_private",
           "PREFIX"]

log = logging.getLogger(__name__)

PREFIX = "ergon-run-"
_OWNER = "owner"
_SNAPSHOT = "status.json"
KEEP_FOREIGN = 3600.0  # seconds a dead supervisor's run directory is left for one on its own store


def _base(base: str | None) -> str:
    return base if base is not None else tempfile.gettempdir()


def create(base: str | None = None, store: str | None = None) -> tuple[str, list[Snapshot]]:
    """A new run directory owned by this process, and the last snapshots of the dead supervisors
    whose run directories were removed first (see remove_dead)."""
    dead = remove_dead(base, store)
    path = tempfile.mkdtemp(prefix=PREFIX, dir=base)
    me = psutil.Process()
    write_private(os.path.join(path, _OWNER), f"{me.pid} {me.create_time()!r}\n")
    return path, dead


def _owner_runs(path: str) -> bool | None:
    """Whether the supervisor that made `path` still runs; None if that cannot be told."""
    try:
        with open(os.path.join(path, _OWNER)) as f:
            pid_text, started_text = f.read().split()
        pid, started = int(pid_text), float(started_text)
    except (OSError, ValueError):
        return None  # being created right now, or not ours to judge
    try:
        return bool(abs(psutil.Process(pid).create_time() - started) < 0.5)  # else the pid was reused
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return None


def _dirs(base: str | None) -> list[str]:
    return sorted(glob.glob(os.path.join(_base(base), PREFIX + "*")))


def remove_dead(base: str | None = None, store: str | None = None) -> list[Snapshot]:
    """Remove the run directories of supervisors that no longer run; returns the last snapshot
    found in each (a supervisor that died before writing one has none).

    With `store` (a public store URL), one whose supervisor served another store is left for a
    supervisor of that store, unless its last snapshot is older than KEEP_FOREIGN seconds.
    """
    removed = []
    for path in _dirs(base):
        if _owner_runs(path) is False:
            snapshot = read_snapshot(path)
            if store is not None and snapshot is not None and snapshot.store != store and _age(path) < KEEP_FOREIGN:
                continue
            shutil.rmtree(path, ignore_errors=True)
            if snapshot is not None:
                removed.append(snapshot)
            log.info("removed the run directory of a dead supervisor: %s", path)
    return removed


def _age(path: str) -> float:
    """Seconds since the run directory's snapshot was last written."""
    try:
        return time.time() - os.path.getmtime(os.path.join(path, _SNAPSHOT))
    except OSError:
        return float("inf")


def live(base: str | None = None) -> list[str]:
    """The run directories whose supervisor runs."""
    return [path for path in _dirs(base) if _owner_runs(path)]


def write_snapshot(run_dir: str, snapshot: Snapshot) -> None:
    """Replace the run directory's snapshot file at once (readers never see half of one)."""
    write_private(os.path.join(run_dir, _SNAPSHOT), json.dumps(snapshot.to_dict()))


def read_snapshot(run_dir: str) -> Snapshot | None:
    """The last snapshot written to `run_dir`, or None if there is none (yet) or it is gone."""
    try:
        with open(os.path.join(run_dir, _SNAPSHOT)) as f:
            return Snapshot.from_dict(json.load(f))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def snapshots(base: str | None = None) -> list[Snapshot]:
    """The snapshots of every running supervisor that has written one."""
    found = (read_snapshot(path) for path in live(base))
    return [s for s in found if s is not None]


def write_private(path: str, text: str) -> None:
    """Write `text` to `path` with mode 0600, replacing any earlier file at once."""
    temporary = f"{path}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(temporary, path)
