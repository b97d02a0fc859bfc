"""The side-effect ledger: a step body records that it started, so chaos runs can see executions.

    from ergon_actors.testing import ledger

    @step
    async def charge(self) -> str:
        ledger.record()          # first thing in the body, before any side effect
        ...

`record()` does nothing unless the variable ERGON_CHAOS_LEDGER names a file (the chaos harness
sets it for the worker processes). Then it appends one JSON line per call: the flow_id, the step
position and name, the lease epoch, attempt and try of the run, the pid and the time, and the
earlier positions this run had not got past yet (steps in flight beside this one: a DAG, a
gather). Each line is a single O_APPEND write, so lines from many processes never interleave,
and a SIGKILL either wrote the whole line or none of it.
"""

from __future__ import annotations

import contextvars
import json
import os
import time
from dataclasses import dataclass

from ..executor.context import NESTED

__all__ = ["Ledger", "LedgerEntry", "LedgerReader", "ledger", "read_ledger", "LEDGER_ENV"]

LEDGER_ENV = "ERGON_CHAOS_LEDGER"

_muted: contextvars.ContextVar[bool] = contextvars.ContextVar("ergon_ledger_muted", default=False)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One recorded step start."""

    flow_id: str
    position: int
    step: str
    epoch: int
    attempt: int
    pid: int
    t: float  # time.time() when the step body started
    note: str | None = None
    try_number: int = 1            # 1 + the failed tries of this step in this attempt
    pending: tuple[int, ...] = ()  # earlier positions this run had not got past when the step started
    ahead: tuple[int, ...] = ()    # later positions this run had got past already

    @classmethod
    def from_json(cls, line: str) -> LedgerEntry:
        d = json.loads(line)
        return cls(d["flow"], d["pos"], d["step"], d["epoch"], d["attempt"], d["pid"], d["t"], d.get("note"),
                   d.get("try", 1), tuple(d.get("pending", ())), tuple(d.get("ahead", ())))

    def got_past(self, position: int) -> bool:
        """True when the run that started this step had got past `position` (its call returned).

        A timer, signal or child nested in a step's body was got past once that step was."""
        if position >= NESTED:
            position = position // NESTED - 1
        return position in self.ahead if position > self.position else (
            position < self.position and position not in self.pending)


class Ledger:
    """Records step starts into the file named by ERGON_CHAOS_LEDGER (a no-op when unset)."""

    @property
    def path(self) -> str | None:
        """The ledger file this process writes to, or None when recording is off."""
        return os.environ.get(LEDGER_ENV) or None

    @property
    def active(self) -> bool:
        """True when record() writes (a ledger file is named and this context is not muted)."""
        return self.path is not None and not _muted.get()

    def record(self, note: str | None = None, *, position: int | None = None) -> None:
        """Record that the step running in this task started. Call it first in the step body.

        Args:
            note: free text kept with the line (shown in reports; not interpreted).
            position: the step's position, if it cannot be found (it always can when called
                from a @step body, or a function such a body calls, in the same task).

        Raises:
            RuntimeError: recording is on but no step is running in this task.
        """
        path = self.path
        if path is None or _muted.get():
            return
        from ..executor.context import current, current_step  # here: the ledger must import cheaply
        ctx = current()
        found = current_step()
        if ctx is None or (found is None and position is None):
            raise RuntimeError("ledger.record() must be called from a @step body of a running flow")
        at = position if position is not None else found.position if found is not None else 0
        line: dict[str, object] = {
            "flow": ctx.flow_id, "pos": at, "step": found.name if found is not None else "?",
            "epoch": ctx.epoch, "attempt": ctx.attempt, "pid": os.getpid(), "t": time.time()}
        if found is not None and found.try_number > 1:
            line["try"] = found.try_number
        pending, ahead = ctx.pending(at), ctx.passed_above(at)
        if pending:
            line["pending"] = pending
        if ahead:
            line["ahead"] = ahead
        if note is not None:
            line["note"] = note
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def mute() -> contextvars.Token[bool]:
    """Stop recording in this context (the harness's fault-free reference run); see `unmute`."""
    return _muted.set(True)


def unmute(token: contextvars.Token[bool]) -> None:
    _muted.reset(token)


def read_ledger(path: str) -> list[LedgerEntry]:
    """Every complete line of a ledger file, in the order they were written."""
    return LedgerReader(path).poll()


class LedgerReader:
    """Reads a ledger file incrementally: each poll() returns the lines appended since the last."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._offset = 0
        self.malformed = 0

    def poll(self) -> list[LedgerEntry]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        self._offset += end
        entries = []
        for raw in data[:end].splitlines():
            if not raw.strip():
                continue
            try:
                entries.append(LedgerEntry.from_json(raw.decode()))
            except (ValueError, KeyError, TypeError):
                self.malformed += 1
        return entries


ledger = Ledger()
