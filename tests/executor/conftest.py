"""`make_store`: each test that takes it runs once on the memory store and once on SQLite."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ergon_actors import InMemoryExecutionLog, SqliteExecutionLog
from ergon_actors.storage import LogBase


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Awaitable[LogBase]]:
    """An async factory of a connected, empty store of the parameter's kind."""
    async def make() -> LogBase:
        if request.param == "memory":
            return InMemoryExecutionLog()
        return await SqliteExecutionLog(tmp_path / "flows.db").connect()
    return make
