"""What every command shares: exit codes, options, durations, colours, tables, opening the store."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import sys
from dataclasses import dataclass
from enum import IntEnum
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import click
from click.core import ParameterSource

from ..config import DEFAULT_STORE, Settings, check_store_url, parse_seconds
from ..errors import StoreError
from .. import logs
from ..logs import FORMATS, LEVELS
from ..storage import open_store
from ..storage.base import LogBase

__all__ = ["ExitCode", "exit_codes", "Seconds", "Options", "global_options", "command", "module_option",
           "json_option", "settings", "existing_store", "new_store", "run_async", "style", "status_style",
           "table", "echo_json", "version"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    GAVE_UP = 3
    NOT_FOUND = 4
    STORE = 5
    VIOLATIONS = 6
    REFUSED = 7
    DECLINED = 8
    INTERRUPTED = 130


MEANINGS = {
    ExitCode.OK: "done",
    ExitCode.ERROR: "an unexpected error (a bug: please report it with the traceback)",
    ExitCode.USAGE: "bad arguments, options or ERGON_* variables",
    ExitCode.GAVE_UP: "actors restarted more often than the restart intensity allows",
    ExitCode.NOT_FOUND: "no such flow, module or flow class, or a module that failed to import",
    ExitCode.STORE: "the store cannot be opened (missing, unreachable, foreign or newer file)",
    ExitCode.VIOLATIONS: "chaos: the run broke a promise (the report names flows and steps)",
    ExitCode.REFUSED: "the store refused: already sent, already ended, not failed, id in use",
    ExitCode.DECLINED: "a confirmation was declined (or could not be asked: no terminal, no --yes)",
    ExitCode.INTERRUPTED: "stopped by a second Ctrl-C / SIGTERM before draining finished",
}


def exit_codes(*codes: ExitCode) -> str:
    """A command's epilog: the exit codes it can return, with their meaning."""
    lines = [f"  {int(code):<4}{code.name:<12} {MEANINGS[code]}" for code in (ExitCode.OK, *codes)]
    return "\b\nExit codes:\n" + "\n".join(lines)


class Seconds(click.ParamType):  # type: ignore[type-arg]  # generic only in click >= 8.4
    """Seconds as a number (2.5) or a duration (30s, 10m, 1h30m)."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_seconds(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@dataclass
class Options:
    """The options every command takes, before or after its name (the later one wins)."""

    store: str | None = None
    verbose: int = 0
    log_level: str | None = None
    log_level_from_env: bool = False  # -v on the command line beats ERGON_LOG_LEVEL
    log_format: str | None = None

    def level(self) -> str:
        if self.log_level is not None and not (self.log_level_from_env and self.verbose):
            return self.log_level.upper()
        return ("WARNING", "INFO", "DEBUG")[min(self.verbose, 2)]


def _keep(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None and value != 0:
            chosen = ctx.ensure_object(Options)
            setattr(chosen, name, value)
            if name == "log_level":
                chosen.log_level_from_env = ctx.get_parameter_source(param.name or "") == ParameterSource.ENVIRONMENT
    return callback


def global_options(top: bool) -> Callable[[F], F]:
    """The options of every command. On the group (`top`) they read ERGON_STORE, ERGON_LOG_LEVEL
    and ERGON_LOG_FORMAT; a command's own copy, given after its name, overrides them."""
    def env(name: str) -> dict[str, Any]:
        return {"envvar": name, "show_envvar": True} if top else {}

    def where(name: str) -> str:
        return "" if top else f"  [env var: {name}]"

    def decorate(fn: F) -> F:
        for option in reversed([
            click.option("--store", metavar="URL", callback=_keep("store"), expose_value=False,
                         help=f"sqlite:///FILE or redis://HOST:PORT/DB (default {DEFAULT_STORE})"
                              + where("ERGON_STORE"), **env("ERGON_STORE")),
            click.option("-v", "--verbose", count=True, callback=_keep("verbose"), expose_value=False,
                         help="more log output: -v info, -vv debug (ergon_actors' own loggers only)"),
            click.option("--log-level", type=click.Choice(LEVELS, case_sensitive=False), callback=_keep("log_level"),
                         expose_value=False, help="level of ergon_actors' log records (default WARNING)"
                                                  + where("ERGON_LOG_LEVEL"), **env("ERGON_LOG_LEVEL")),
            click.option("--log-format", type=click.Choice(FORMATS), callback=_keep("log_format"),
                         expose_value=False, help="log lines as text or one JSON object each"
                                                  + where("ERGON_LOG_FORMAT"), **env("ERGON_LOG_FORMAT")),
        ]):
            fn = option(fn)
        return fn
    return decorate


def command(*codes: ExitCode, name: str | None = None) -> Callable[[Callable[..., Any]], click.Command]:
    """A command taking the global options too, listing the exit codes it can return; logging is
    configured once all its options are parsed."""
    def decorate(fn: Callable[..., Any]) -> click.Command:
        @functools.wraps(fn)
        def configured(*args: Any, **kwargs: Any) -> Any:
            chosen = options()
            logs.configure(chosen.level(), chosen.log_format or "text")
            if chosen.log_format:  # the actor processes log in the same format
                os.environ["ERGON_LOG_FORMAT"] = chosen.log_format
            return fn(*args, **kwargs)
        return click.command(name, epilog=exit_codes(*codes))(global_options(top=False)(configured))
    return decorate


def module_option(fn: F) -> F:
    return click.option("--module", "modules", multiple=True, metavar="MODULE",
                        help="import MODULE first, so values of its types decode (repeatable)")(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="print JSON (lossless: see docs/operating.md)")(fn)


def options() -> Options:
    return click.get_current_context().ensure_object(Options)


def settings(**extra: Any) -> Settings:
    """Settings from the ERGON_* variables and the options given (memory:// refused)."""
    chosen = Settings.from_env(store=options().store, **extra)
    if check_store_url(chosen.store) == "memory":
        raise click.UsageError("a memory:// store lives inside one process; the command line needs "
                               "sqlite:///FILE or redis://HOST:PORT/DB")
    return chosen


async def new_store(chosen: Settings) -> LogBase:
    """Open the store, creating it if it does not exist yet (schedule, run)."""
    return await open_store(chosen.store, synchronous=chosen.synchronous)


async def existing_store(chosen: Settings) -> LogBase:
    """Open a store that must exist already: commands that read or repair never create one."""
    parts = urlsplit(chosen.store)
    if parts.scheme == "sqlite" and not Path(parts.path[1:]).is_file():
        raise StoreError(f"no SQLite store at {parts.path[1:]!r} (nothing was created; check --store "
                         "or ERGON_STORE)")
    return await open_store(chosen.store, synchronous=chosen.synchronous)


def run_async(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


# -- output ----------------------------------------------------------------------------------

def version() -> str:
    try:
        return metadata.version("ergon-actors")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def colour_enabled(stream: Any = None) -> bool:
    """Colours only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    stream = stream or sys.stdout
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def style(text: str, *, err: bool = False, **how: Any) -> str:
    return click.style(text, **how) if colour_enabled(sys.stderr if err else sys.stdout) else text


STATUS_COLOURS = {"COMPLETE": "green", "FAILED": "red", "CANCELLED": "yellow", "RUNNING": "cyan",
                  "SUSPENDED": "blue", "PENDING": "white"}


def status_style(status: str) -> str:
    return style(status, fg=STATUS_COLOURS.get(status), bold=status == "FAILED")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def table(headers: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """Columns aligned to their widest cell (colour codes do not count)."""
    lines = [list(headers)] + [list(r) for r in rows]
    widths = [max(len(_ANSI.sub("", line[i])) for line in lines) for i in range(len(lines[0]))]
    out = []
    for n, line in enumerate(lines):
        cells = [cell + " " * (w - len(_ANSI.sub("", cell))) for cell, w in zip(line, widths, strict=True)]
        text = "  ".join(cells).rstrip()
        out.append(style(text, bold=True) if n == 0 else text)
    return "\n".join(out)


def echo_json(data: Any, *, lines: bool = False) -> None:
    import json
    click.echo(json.dumps(data, ensure_ascii=False, separators=(",", ":")) if lines
               else json.dumps(data, indent=2, ensure_ascii=False))
