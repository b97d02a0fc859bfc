"""Finding flows: a filter, pages of flows in schedule order, and times given as text."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime
from collections.abc import AsyncIterator, Iterable

from ..core import FlowRecord, FlowStatus
from ..errors import ConfigError
from ..executor.timer import parse_duration
from ..storage.base import LogBase
from ..storage.commands import FlowPage, QueryFlows

__all__ = ["FlowFilter", "live", "list_flows", "iter_flows", "parse_status", "parse_time", "parse_filter", "LIVE"]

LIVE = (FlowStatus.PENDING, FlowStatus.RUNNING, FlowStatus.SUSPENDED)
MAX_LIMIT = 10_000  # flows in one page at most


FlowFilter = QueryFlows
"""Which flows: a QueryFlows whose filters are set (every one given must match; see its
docstring); list_flows sets its order, page size and cursor."""


def live(flow_filter: FlowFilter) -> FlowFilter:
    """The same filter, narrowed to flows that have not ended (what cancel can act on)."""
    statuses = LIVE if flow_filter.statuses is None else tuple(s for s in flow_filter.statuses if s in LIVE)
    return replace(flow_filter, statuses=statuses)


ANY = QueryFlows()  # the filter of every flow


async def list_flows(store: LogBase, flow_filter: FlowFilter = ANY, *, newest_first: bool = True,
                     limit: int = 50, cursor: str | None = None) -> FlowPage:
    """One page of matching flows, newest first unless asked; `cursor` continues a previous page.

    The page is full unless it is the last one (its cursor is None).

    Raises:
        ConfigError: limit out of 1..10000, or a cursor this store did not give.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ConfigError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    flows: list[FlowRecord] = []
    while True:
        try:
            page = await store.query_flows(replace(flow_filter, newest_first=newest_first,
                                                   limit=limit - len(flows), cursor=cursor))
        except (ValueError, TypeError) as exc:  # a cursor of another store or a mistyped one
            raise ConfigError(f"not a cursor of this store: {cursor!r}") from exc
        flows += page.flows
        cursor = page.cursor
        if cursor is None or len(flows) >= limit:
            return FlowPage(tuple(flows), cursor)


async def iter_flows(store: LogBase, flow_filter: FlowFilter = ANY, *, newest_first: bool = False,
                     batch: int = 500) -> AsyncIterator[FlowRecord]:
    """Every matching flow, oldest first unless asked, fetched `batch` at a time."""
    cursor = None
    while True:
        page = await list_flows(store, flow_filter, newest_first=newest_first, limit=batch, cursor=cursor)
        for flow in page.flows:
            yield flow
        if page.cursor is None:
            return
        cursor = page.cursor


def parse_status(text: str) -> str:
    """A status name in any case ("failed"), as the store spells it; ConfigError otherwise."""
    try:
        return FlowStatus(text.strip().upper()).value
    except ValueError:
        names = ", ".join(s.value.lower() for s in FlowStatus)
        raise ConfigError(f"not a flow status: {text!r} (one of {names})") from None


def parse_time(text: str, now: float | None = None) -> float:
    """Seconds since the epoch from an ISO 8601 time ("2025-01-31", "2025-01-31T12:00:00Z"; naive
    means local time) or a duration before now ("10m", "2h", "3d": that long ago)."""
    text = text.strip()
    try:
        return (time.time() if now is None else now) - parse_duration(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00")).timestamp()
    except ValueError:
        raise ConfigError(f"not a time: {text!r} (write an ISO 8601 time such as 2025-01-31T12:00:00Z, "
                          "or how long ago, such as 10m, 2h, 3d)") from None


def split_list(values: Iterable[str]) -> list[str]:
    """Repeated values and comma-separated lists alike: ("failed,cancelled", "running")."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def parse_filter(statuses: Iterable[str] = (), flow_types: Iterable[str] = (), since: str | None = None,
                 until: str | None = None, id_contains: str | None = None,
                 error_contains: str | None = None) -> FlowFilter:
    """The filter that an operator's text describes (the command line's options, the dashboard's
    form); empty text means no filter. ConfigError for a bad status or time."""
    chosen_statuses = tuple(parse_status(s) for s in split_list(statuses)) or None
    return FlowFilter(chosen_statuses, tuple(split_list(flow_types)) or None,
                      parse_time(since) if since else None, parse_time(until) if until else None,
                      id_contains or None, error_contains or None)
