"""Run directories: a supervisor's private folder for its sockets, actor specs and status snapshot.

Each is `ergon-run-*` in the temp folder, mode 0700, with an `owner` file naming the pid and
start time of the supervisor that made it. A supervisor that was SIGKILLed cannot remove its
own; the next one to start removes every run directory whose owner no longer runs.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import tempfile

import psutil

from .snapshot import Snapshot

__all__ = ["create", "remove_dead", "live", "write_snapshot", "read_snapshot", "snapshots", "write_private",
           "PREFIX"]

log = logging.getLogger(__name__)

PREFIX = "ergon-run-"
_OWNER = "owner"
_SNAPSHOT = "status.json"


def _base(base: str | None) -> str:
    return base if base is not None else tempfile.gettempdir()


def create(base: str | None = None) -> str:
    """A new run directory owned by this process (dead supervisors' ones are removed first)."""
    remove_dead(base)
    path = tempfile.mkdtemp(prefix=PREFIX, dir=base)
    me = psutil.Process()
    write_private(os.path.join(path, _OWNER), f"{me.pid} {me.create_time()!r}\n")
    return path


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


def remove_dead(base: str | None = None) -> list[str]:
    """Remove the run directories of supervisors that no longer run; returns their paths."""
    removed = []
    for path in _dirs(base):
        if _owner_runs(path) is False:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            log.info("removed the run directory of a dead supervisor: %s", path)
    return removed


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
