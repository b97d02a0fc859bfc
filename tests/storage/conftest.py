"""The `store` fixture: every contract test runs once per store implementation.

pytest-asyncio is not used. A test writes an async body taking the connected store and hands it
to `store.run(body)`, which opens the store, runs the body and closes the store, all on one fresh
event loop:

    def test_something(store):
        async def body(log):
            await log.schedule_flow("f1", "T", b"args")
            ...
        store.run(body)
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from ergon_actors.storage import InMemoryExecutionLog, LogBase, SqliteExecutionLog

from ..redis_server import RedisServer, empty_store


async def _memory(tmp_path: Path) -> LogBase:
    return InMemoryExecutionLog()


async def _sqlite(tmp_path: Path) -> LogBase:
    return await SqliteExecutionLog(tmp_path / "store.db").connect()


async def _sqlite_inline(tmp_path: Path) -> LogBase:
    """The SQLite store as the journal opens it: transactions on the event loop's own thread."""
    return await SqliteExecutionLog(tmp_path / "store.db", inline=True).connect()


_REDIS_URL: list[str] = []  # the session's redis-server, once the redis_server fixture started it
_PREFIXES = itertools.count()


async def _redis(tmp_path: Path) -> LogBase:
    """A store under a key prefix of its own, emptied first, on the session's redis-server."""
    (url,) = _REDIS_URL
    return await empty_store(url, f"test{next(_PREFIXES)}")


# name -> async factory(tmp_path) returning a connected, empty store. Add a store here and every
# contract test runs against it.
STORE_FACTORIES: dict[str, Callable[[Path], Awaitable[LogBase]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "sqlite-inline": _sqlite_inline,
    "redis": _redis,  # needs redis-server on PATH: the session fixture starts one (never skipped)
}
MARKS = {"redis": [pytest.mark.redis]}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server (AOF, appendfsync always) on a free loopback port for the whole session."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    _REDIS_URL[:] = [server.url]
    try:
        yield server
    finally:
        _REDIS_URL.clear()
        server.stop()


class StoreHarness:
    """Runs an async test body against a fresh store of one kind, on a fresh event loop."""

    def __init__(self, name: str, tmp_path: Path) -> None:
        self.name = name
        self.tmp_path = tmp_path
        self._factory = STORE_FACTORIES[name]

    def run(self, body: Callable[[LogBase], Awaitable[object]]) -> object:
        async def main() -> object:
            log = await self._factory(self.tmp_path)
            try:
                return await body(log)
            finally:
                await log.close()

        return asyncio.run(main())


@pytest.fixture(params=[pytest.param(name, marks=MARKS.get(name, ())) for name in STORE_FACTORIES])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreHarness:
    """One StoreHarness per store kind; `store.run(body)` runs `body(log)` on a new store."""
    if request.param == "redis":
        request.getfixturevalue("redis_server")
    return StoreHarness(request.param, tmp_path)
