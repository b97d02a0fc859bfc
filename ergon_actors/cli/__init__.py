"""python -m ergon_actors: the command line. Parsing and output only; the work is in ops and runtime."""

from __future__ import annotations

from .app import cli, main
from .chaos import chaos
from .common import ExitCode
from .flows import cancel, fork, retry, schedule, signal
from .migrate import migrate
from .run import run
from .views import inspect, list_command, status
from .completion import completion
from .dashboard import dashboard
from .upkeep import prune, schedules

for _command in (run, schedule, schedules, status, list_command, inspect, signal, cancel, retry, fork, migrate, prune,
                 chaos, dashboard, completion):
    cli.add_command(_command)

__all__ = ["main", "cli", "ExitCode"]
