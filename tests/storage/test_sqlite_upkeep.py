"""SQLite schema 5 on a file of an earlier version: counts kept by triggers from the flows it
had, and auto_vacuum switched on by one VACUUM once nothing else holds the file."""

import sqlite3
import time

import pytest

from ergon_actors.core import FlowStatus
from ergon_actors.storage import SqliteExecutionLog

from .test_sqlite import raw, run, version_1_file

pytestmark = pytest.mark.timeout(60)


async def counts_and_scan(path):
    log = await SqliteExecutionLog(path).connect()
    try:
        counts = {k: v for k, v in (await log.count_flows()).items() if k in FlowStatus.__members__}
        scanned: dict[str, int] = {}
        for flow in await log.list_flows():
            scanned[flow.status] = scanned.get(flow.status, 0) + 1
        return counts, scanned
    finally:
        await log.close()


async def open_and_close(path):
    log = await SqliteExecutionLog(path).connect()
    await log.close()


def test_an_upgraded_file_counts_the_flows_it_had_and_gives_space_back(tmp_path):
    path = version_1_file(tmp_path / "old.db")
    assert raw(path, "PRAGMA auto_vacuum") == [(0,)]
    counts, scanned = run(counts_and_scan(path))
    assert counts == scanned == {"PENDING": 2, "RUNNING": 1, "FAILED": 1, "SUSPENDED": 1}
    assert raw(path, "PRAGMA auto_vacuum") == [(2,)]  # INCREMENTAL, by one VACUUM
    assert raw(path, "SELECT value FROM ergon_meta WHERE key = 'auto_vacuum'") == [("on",)]

    async def prune() -> int:
        log = await SqliteExecutionLog(path).connect()
        try:
            return await log.prune_flows(time.time() + 1)
        finally:
            await log.close()

    assert run(prune()) == 1  # the failed flow
    assert run(counts_and_scan(path))[0] == {"PENDING": 2, "RUNNING": 1, "SUSPENDED": 1}


def test_the_switch_waits_for_an_open_that_has_the_file_to_itself(tmp_path):
    path = version_1_file(tmp_path / "old.db")
    run(counts_and_scan(path))  # upgraded and switched; now as if the switch had not happened yet
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA auto_vacuum = NONE")
    db.execute("VACUUM")
    db.execute("UPDATE ergon_meta SET value = 'wanted' WHERE key = 'auto_vacuum'")
    try:
        db.execute("BEGIN IMMEDIATE")  # another process writing: the rewrite cannot have the file
        started = time.monotonic()
        run(open_and_close(path))  # opens without waiting for it
        assert time.monotonic() - started < 5
    finally:
        db.close()
    assert raw(path, "PRAGMA auto_vacuum") == [(0,)]
    assert raw(path, "SELECT value FROM ergon_meta WHERE key = 'auto_vacuum'") == [("wanted",)]
    run(counts_and_scan(path))
    assert raw(path, "PRAGMA auto_vacuum") == [(2,)]
    assert raw(path, "SELECT value FROM ergon_meta WHERE key = 'auto_vacuum'") == [("on",)]


def test_a_new_file_is_incremental_from_the_start(tmp_path):
    run(counts_and_scan(tmp_path / "new.db"))
    assert raw(tmp_path / "new.db", "PRAGMA auto_vacuum") == [(2,)]
