"""The `store` fixture: every contract test runs once per store implementation.

pytest-asyncio is not used. A test writes an async body taking the connected store and hands it
to `store.run(body)`, which opens the store, runs the body and closes the store, all on one fresh
event loop (aiosqlite binds its connection to the loop that opened it):

    def test_something(store):
        async def body(log):
            await log.schedule_flow("f1", "T", b"args")
            ...
        store.run(body)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Awaitable, Callable

import pytest

from ergon_actors.storage import InMemoryExecutionLog, LogBase, SqliteExecutionLog


async def _memory(tmp_path: Path) -> LogBase:
    return InMemoryExecutionLog()


async def _sqlite(tmp_path: Path) -> LogBase:
    return await SqliteExecutionLog(tmp_path / "store.db").connect()


# name -> async factory(tmp_path) returning a connected, empty store. Add a store here and every
# contract test runs against it.
STORE_FACTORIES: dict[str, Callable[[Path], Awaitable[LogBase]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    # "redis": _redis,  # later: connect to a test Redis DB (skip when none is reachable) and
    #                   # flush it here so each test starts from an empty store.
}


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


@pytest.fixture(params=list(STORE_FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreHarness:
    """One StoreHarness per store kind; `store.run(body)` runs `body(log)` on a new store."""
    return StoreHarness(request.param, tmp_path)
