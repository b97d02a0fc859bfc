"""Stores: one ExecutionLog protocol; memory, SQLite and Redis implementations."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..config import check_store_url
from .base import ExecutionLog, LogBase
from .memory import InMemoryExecutionLog
from .pyergon import TimerNotificationSource, WorkNotificationSource
from .sqlite import SqliteExecutionLog

__all__ = ["ExecutionLog", "LogBase", "InMemoryExecutionLog", "SqliteExecutionLog", "RedisExecutionLog",
           "open_store", "check_store_url", "WorkNotificationSource", "TimerNotificationSource"]


def __getattr__(name: str) -> object:
    """RedisExecutionLog, imported when first asked for (it loads the redis client)."""
    if name == "RedisExecutionLog":
        from .redis import RedisExecutionLog
        return RedisExecutionLog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


async def open_store(url: str, *, synchronous: str = "FULL", inline: bool = False,
                     at_once: bool = False) -> LogBase:
    """Open and connect the store a URL names.

    Args:
        url: sqlite:///relative.db, sqlite:////absolute.db, memory:// or redis://host:port/db.
        synchronous: SQLite durability level (OFF, NORMAL, FULL, EXTRA).
        inline: SQLite: commit on the event loop's own thread (see SqliteExecutionLog).
        at_once: SQLite: inline, each call committed at once (see SqliteExecutionLog).

    Raises:
        ConfigError: the URL does not parse.
        StoreError: the store cannot be opened (corrupt, foreign, newer schema).
    """
    scheme = check_store_url(url)
    if scheme == "memory":
        return InMemoryExecutionLog()
    if scheme == "sqlite":
        path = urlsplit(url).path[1:]  # sqlite:///x.db -> x.db ; sqlite:////abs -> /abs
        return await SqliteExecutionLog(path, synchronous=synchronous, inline=inline, at_once=at_once).connect()
    from .redis import RedisExecutionLog
    return await RedisExecutionLog(url).connect()
