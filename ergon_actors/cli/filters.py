"""The options that pick flows (list, cancel) and the FlowFilter they make."""

from __future__ import annotations

from typing import Any, TypeVar
from collections.abc import Callable

import click

from ..core import FlowStatus
from ..ops import FlowFilter, parse_filter

__all__ = ["filter_options", "flow_filter"]

F = TypeVar("F", bound=Callable[..., Any])
STATUSES = [s.value.lower() for s in FlowStatus]


def filter_options(fn: F) -> F:
    for option in reversed([
        click.option("--status", "statuses", multiple=True, metavar="STATUS",
                     shell_complete=lambda ctx, param, text: [s for s in STATUSES if s.startswith(text.lower())],
                     help=f"of these statuses ({', '.join(STATUSES)}); repeatable or comma-separated"),
        click.option("--type", "flow_types", multiple=True, metavar="CLASS",
                     help="of these flow classes; repeatable or comma-separated"),
        click.option("--since", metavar="TIME", help="created at or after TIME: ISO 8601, or how long ago (2h, 3d)"),
        click.option("--until", metavar="TIME", help="created before TIME: ISO 8601, or how long ago"),
        click.option("--id", "id_contains", metavar="TEXT", help="whose flow id contains TEXT"),
        click.option("--error", "error_contains", metavar="TEXT",
                     help="whose error type contains TEXT (e.g. ValueError, myapp.errors:)"),
    ]):
        fn = option(fn)
    return fn


def flow_filter(statuses: tuple[str, ...], flow_types: tuple[str, ...], since: str | None, until: str | None,
                id_contains: str | None, error_contains: str | None) -> FlowFilter:
    """The filter the options describe (ConfigError for a bad status or time)."""
    return parse_filter(statuses, flow_types, since, until, id_contains, error_contains)


def is_empty(chosen: FlowFilter) -> bool:
    return chosen == FlowFilter()  # no filter given
