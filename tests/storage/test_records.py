"""What the SQLite and Redis stores keep on disk for a Failure: the same bytes as ever."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from ergon_actors.core import Failure, FlowStatus
from ergon_actors.errors import DecodeError
from ergon_actors.storage import SqliteExecutionLog
from ergon_actors.storage.records import dump_failure, load_failure

pytestmark = pytest.mark.timeout(30)

FAILURE = Failure("builtins:ValueError", "bad input", False, "Traceback ...", b"\x91\xa3bad")
# Written by the stores since their first schema version (then through the wire codec).
STORED = bytes.fromhex("c7354095b36275696c74696e733a56616c75654572726f72a962616420696e707574c2ad54726163656261"
                       "636b202e2e2ec40591a3626164")
CANCELLED = bytes.fromhex("c7444095d9266572676f6e5f6163746f72732e6572726f72733a466c6f7743616e63656c6c656445"
                          "72726f72b7666c6f772027663127207761732063616e63656c6c6564c0a0c0")


def test_failures_are_stored_in_the_format_on_disk():
    assert dump_failure(FAILURE) == STORED
    assert dump_failure(Failure.cancelled("f1")) == CANCELLED
    assert load_failure(STORED) == FAILURE
    assert load_failure(CANCELLED) == Failure.cancelled("f1")


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x90", bytes.fromhex("c70141c0"), STORED[:-3]])
def test_bytes_that_are_not_a_stored_failure_are_a_decode_error(data):
    with pytest.raises(DecodeError):
        load_failure(data)


def test_a_sqlite_file_keeps_and_reads_the_stored_bytes(tmp_path):
    path = tmp_path / "store.db"

    async def write() -> None:
        async with await SqliteExecutionLog(path).connect() as log:
            await log.schedule_flow("f", "T", b"")
            (claim,) = await log.claim("w", 1, 30.0)
            await log.finish_flow("f", claim.flow.epoch, FlowStatus.FAILED, error=FAILURE)

    async def read() -> Failure | None:
        async with await SqliteExecutionLog(path).connect() as log:
            return (await log.get_flow("f")).error

    asyncio.run(write())
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT error FROM flows WHERE flow_id = 'f'").fetchone() == (STORED,)
    finally:
        db.close()
    assert asyncio.run(read()) == FAILURE
