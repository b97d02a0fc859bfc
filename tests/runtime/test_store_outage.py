"""A store outage under `run`: the journal holds its batches and retries until the store is back.

No flow fails, no acknowledged step is lost or runs again, the log stays short, and every flow
completes once the store recovers: SQLite on a full disk, Redis SIGSTOPped, Redis killed and
restarted. A store broken for good (a corrupt file) stops the journal and `run` gives up.
"""

import os
import signal
import sqlite3
import time

import psutil
import pytest

from ergon_actors.chaos.procs import still_alive
from tests.helpers import assert_no_step_ran_after_ack, read_ledger, wait_until
from tests.redis_server import RedisServer
from tests.runtime.conftest import FLOWS
from tests.runtime.flows import LedgerFlow
from tests.runtime.test_redis_hosts import check_journal, schedule
from tests.storage.test_sqlite_faults import fill, small_disk  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

OUTAGE = 15.0
KEYS = [f"f{i:02d}" for i in range(30)]
STEPS = 5


def _through_an_outage(cli_logged, url: str, ledger: str, down, up) -> str:
    """Run every flow with `run --until-idle`, the store down (`down()`) for OUTAGE seconds once
    work is under way, then up again (`up()`); returns what `run` logged during the outage."""
    schedule(url, [LedgerFlow(k, ledger, "sleep:0.3", steps=STEPS) for k in KEYS])
    proc = cli_logged("run", FLOWS, "--store", url, "--workers", "2", "--until-idle")
    wait_until(lambda: os.path.exists(ledger) and len(read_ledger(ledger)) >= 20, timeout=60, what="work under way")
    logged = len(proc.stderr_text())
    down()
    try:
        time.sleep(OUTAGE)  # the outage itself: nothing to wait for
    finally:
        up()
    during = proc.stderr_text()[logged:]
    proc.wait(timeout=120)
    assert proc.returncode == 0, proc.stderr_text()[-3000:]
    return during


def _check_after(url: str, ledger: str, during: str, *, seen: bool = True) -> None:
    assert len(during.splitlines()) < 100, during[-3000:]
    if seen:  # the outage was seen, and said
        assert "journal commit failed" in during, during[-3000:]
    check_journal(url, KEYS, steps=STEPS)  # every flow COMPLETE, each step recorded once
    assert_no_step_ran_after_ack(read_ledger(ledger), KEYS, STEPS)


def test_sqlite_on_a_full_disk_holds_every_write_until_space_is_freed(tmp_path, small_disk, cli_logged):  # noqa: F811
    ledger = str(tmp_path / "ledger")
    db = small_disk / "journal.db"
    ballast = small_disk / "ballast"
    url = f"sqlite:///{db}"
    during = _through_an_outage(cli_logged, url, ledger, lambda: fill(ballast), ballast.unlink)
    _check_after(url, ledger, during)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()  # the tmpfs is unmounted at teardown


@pytest.mark.parametrize("fault", ["sigstop", "kill"])
def test_redis_down_holds_every_write_until_it_is_back(tmp_path, cli_logged, fault):
    ledger = str(tmp_path / "ledger")
    server = RedisServer(tmp_path / "redis").start()
    try:
        if fault == "sigstop":
            pid = server.pid
            down, up = (lambda: os.kill(pid, signal.SIGSTOP)), (lambda: os.kill(pid, signal.SIGCONT))
        else:
            down, up = server.kill, server.start
        during = _through_an_outage(cli_logged, server.url, ledger, down, up)
        # A stopped Redis accepts connections and never answers: the commit in flight may wait
        # for it the whole outage without an error to report.
        _check_after(server.url, ledger, during, seen=fault == "kill")
    finally:
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)
        server.stop()


def test_a_store_broken_for_good_stops_the_journal_and_run_gives_up_with_the_store_exit_code(tmp_path, cli_logged):
    ledger = str(tmp_path / "ledger")
    db = tmp_path / "journal.db"
    url = f"sqlite:///{db}"
    schedule(url, [LedgerFlow(k, ledger, "sleep:0.3", steps=STEPS) for k in KEYS])
    proc = cli_logged("run", FLOWS, "--store", url, "--workers", "2", "--until-idle")
    wait_until(lambda: os.path.exists(ledger) and len(read_ledger(ledger)) >= 20, timeout=60, what="work under way")
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) == 3, children  # the journal and two workers
    logged = len(proc.stderr_text())
    for path in (db, db.with_name("journal.db-wal"), db.with_name("journal.db-shm")):
        with open(path, "r+b") as f:  # in place: the journal's open file and mapped index see it
            f.write(b"\xa5" * os.path.getsize(path))
    assert proc.wait(timeout=60) == 5  # STORE, as for a store that cannot be opened
    during = proc.stderr_text()[logged:]
    assert "its store is broken: StoreError" in during and "file is not a database" in during, during[-3000:]
    assert "supervisor giving up: the journal stopped: its store" in during, during[-3000:]
    assert "\nerror: the journal stopped: its store" in during, during[-3000:]  # run's own last word
    assert len(during.splitlines()) < 50, during[-3000:]  # no log line per attempt
    assert still_alive(children, 5.0) == []  # no actor outlives the supervisor that gave up
