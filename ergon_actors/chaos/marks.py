"""How the chaos harness tells the supervisor under test which worker deaths are its own doing.

Before it SIGKILLs or SIGSTOPs a worker, the harness writes an empty file named after the
worker's pid into the run's marks directory; the supervisor (started by chaos.supervise with
`--kill-marks DIR`) finds the file when that worker dies, and releases its flows rather than
recording the death against them. So the harness's kills are never blamed on a flow, while a
worker that a flow's own step kills is recorded and blamed as under `run`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["KillMarks"]


class KillMarks:
    """The marks directory: `mark(pid)` before a deliberate kill or stop, and, as the
    supervisor's `harness_kills` hook, `marks(pid)` consumes a mark when that worker dies."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def mark(self, pid: int) -> None:
        """Mark the worker `pid` as about to be killed or stopped by the harness."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / str(pid)).touch()

    def unmark(self, pid: int) -> None:
        """Take a mark back (the signal could not be sent)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.directory / str(pid))

    def __call__(self, pid: int) -> bool:
        """True (once) if the harness marked the worker `pid` it just lost."""
        try:
            os.unlink(self.directory / str(pid))
        except FileNotFoundError:
            return False
        return True
