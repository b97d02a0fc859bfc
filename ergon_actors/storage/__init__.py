"""Stores: one ExecutionLog protocol; memory, SQLite and Redis implementations."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import ExecutionLog, LogBase
from .memory import InMemoryExecutionLog
from .sqlite import SqliteExecutionLog

__all__ = ["ExecutionLog", "LogBase", "InMemoryExecutionLog", "SqliteExecutionLog", "open_store",
           "check_store_url"]

_SCHEMES = ("sqlite", "memory", "redis", "rediss")


def check_store_url(url: str) -> str:
    """Return the scheme of a store URL, or raise ConfigError saying what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ConfigError(f"store URL {url!r}: scheme must be one of "
                          f"sqlite:///PATH, memory://, redis://HOST:PORT/DB")
    if parts.scheme == "sqlite" and (parts.netloc or not parts.path.lstrip("/")):
        raise ConfigError(f"store URL {url!r}: write sqlite:///relative.db or sqlite:////absolute/path.db")
    if parts.scheme.startswith("redis") and not parts.hostname:
        raise ConfigError(f"store URL {url!r}: a Redis URL needs a host, e.g. redis://127.0.0.1:6379/0")
    return parts.scheme


async def open_store(url: str, *, synchronous: str = "FULL") -> LogBase:
    """Open and connect the store a URL names.

    Args:
        url: sqlite:///relative.db, sqlite:////absolute.db, memory:// or redis://host:port/db.
        synchronous: SQLite durability level (OFF, NORMAL, FULL, EXTRA).

    Raises:
        ConfigError: the URL does not parse.
        StoreError: the store cannot be opened (corrupt, foreign, newer schema).
    """
    scheme = check_store_url(url)
    if scheme == "memory":
        return InMemoryExecutionLog()
    if scheme == "sqlite":
        path = urlsplit(url).path[1:]  # sqlite:///x.db -> x.db ; sqlite:////abs -> /abs
        return await SqliteExecutionLog(path, synchronous=synchronous).connect()
    from .redis import RedisExecutionLog
    return await RedisExecutionLog(url).connect()
