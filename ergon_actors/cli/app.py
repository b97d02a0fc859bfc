"""The command group, and main(): logging, ERGON_* checks, and exceptions turned into exit codes."""

from __future__ import annotations

import os
import sys
import traceback

import click

from ..config import unknown_variables
from ..errors import (ConfigError, ErgonError, FlowDefinitionError, FlowIdTakenError, FlowNotFoundError,
                      FlowStateError, ModuleImportError, RestartIntensityError, ScheduleNotFoundError, StoreError,
                      UnknownFlowTypeError, UnservedVersionError)
from .common import ExitCode, exit_codes, global_options, style, version
from .completion import COMPLETE_VAR

__all__ = ["cli", "main"]

PROG = "python -m ergon_actors"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=exit_codes(ExitCode.ERROR, ExitCode.USAGE, ExitCode.GAVE_UP, ExitCode.NOT_FOUND,
                               ExitCode.STORE, ExitCode.VIOLATIONS, ExitCode.REFUSED, ExitCode.DECLINED,
                               ExitCode.INTERRUPTED)
             + "\n\nEvery option may also follow the command's name. Docs: docs/operating.md.")
@click.version_option(version(), "--version", prog_name="ergon_actors", message="%(prog)s %(version)s")
@global_options(top=True)
def cli() -> None:
    """Durable flows on a supervised pool of worker processes: run them, find them, repair them."""


def _warn_unknown_variables() -> None:
    for name, close in unknown_variables():
        hint = f" (did you mean {close}?)" if close else ""
        click.echo(style(f"warning: {name} is not a variable ergon_actors reads{hint}; it is ignored",
                         fg="yellow", err=True), err=True)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (the library never calls sys.exit)."""
    args = sys.argv[1:] if argv is None else argv
    if os.environ.get(COMPLETE_VAR):  # the shell asks for completions (see the completion command)
        try:
            cli.main(args, prog_name="ergon-actors", complete_var=COMPLETE_VAR)
        except SystemExit as exc:
            return int(exc.code or 0)
    if not any(a in ("-h", "--help") for a in args) and args[:1] != ["--version"]:
        _warn_unknown_variables()
    try:
        with cli.make_context(PROG, list(args)) as ctx:
            return int(cli.invoke(ctx) or 0)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return ExitCode.INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return ExitCode.USAGE if isinstance(exc, click.UsageError) else exc.exit_code
    except ErgonError as exc:
        code = _code(exc)
        detail = str(exc) if code != ExitCode.ERROR else f"{type(exc).__name__}: {exc}"
        click.echo(style(f"error: {detail}", fg="red", err=True), err=True)
        return code
    except KeyboardInterrupt:  # before `run` handles interrupts itself: nothing was started yet
        click.echo("interrupted", err=True)
        return ExitCode.INTERRUPTED
    except Exception:
        traceback.print_exc()
        click.echo("error: an unexpected error (a bug): please report it with the traceback above", err=True)
        return ExitCode.ERROR


def _code(exc: ErgonError) -> ExitCode:
    if isinstance(exc, ConfigError):
        return ExitCode.USAGE
    if isinstance(exc, StoreError):
        return ExitCode.STORE
    if isinstance(exc, (FlowNotFoundError, FlowDefinitionError, ModuleImportError, UnknownFlowTypeError,
                        ScheduleNotFoundError, UnservedVersionError)):
        return ExitCode.NOT_FOUND
    if isinstance(exc, RestartIntensityError):
        return ExitCode.GAVE_UP
    if isinstance(exc, (FlowStateError, FlowIdTakenError)):
        return ExitCode.REFUSED
    return ExitCode.ERROR
