"""Chaos runs with real processes and signals: a sound runtime passes, a broken journal is caught."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from ergon_actors.chaos.report import VERIFIED_ORDER
from ergon_actors.testing import RAN_AGAIN, STEP_LOST, chaos_run
from tests.helpers import run

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
MODULE = "examples.chaos_orders"
FEATURES = "examples.chaos_features"  # DAG, timer, signals, child flows, retries, timeouts, failures, cancels
ACTOR_FAULTS = {"kill-worker", "stop-worker", "kill-journal", "stop-journal", "kill-supervisor"}
ROOT_USER = os.geteuid() == 0  # only root mounts the small tmpfs that disk-full fills
SQLITE_FAULTS = ACTOR_FAULTS | ({"disk-full"} if ROOT_USER else set())
REDIS_FAULTS = ACTOR_FAULTS | {"kill-redis", "stall-redis"}
HOST_FAULTS = {"kill-host", "stop-host"}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ergon_actors", "chaos", MODULE, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=110,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def no_actor_left() -> None:
    """No process this test started is left (servers other tests' fixtures keep are not ours)."""
    mine = [p for p in psutil.Process().children(recursive=True) if p.pid not in BEFORE]
    assert mine == [], f"processes left behind: {mine}"


BEFORE: set[int] = set()


@pytest.fixture(autouse=True)
def _children_before():
    BEFORE.clear()
    BEFORE.update(p.pid for p in psutil.Process().children(recursive=True))


def check_every_feature(report, faults: set[str]) -> None:
    assert report.ok, report.format()
    assert set(report.faults_by_kind) == faults
    assert report.statuses == {"COMPLETE": 9, "FAILED": 3, "CANCELLED": 3}  # 9 fulfilments, 3 audits, 3 backorders
    assert set(report.verified) == set(VERIFIED_ORDER), report.format()  # every record kind and feature checked
    assert report.verified["child"] == 9 and report.verified["flow"] == 15 + 9
    assert (report.signals, report.cancels) == (9, 3)
    assert set(report.recovery_by_kind) == faults
    no_actor_left()


def test_every_feature_under_every_fault_on_sqlite():
    report = run(chaos_run(FEATURES, 15, duration=10, seed=7), 110)
    check_every_feature(report, SQLITE_FAULTS)
    assert report.steps_journaled > 0 and report.step_runs > 0  # waits and markers are journaled, not run
    assert report.recovery.samples > 0
    assert report.supervisors == report.faults_by_kind["kill-supervisor"] + 1
    assert report.work_dir is None  # removed: nothing to look at
    disk_notes = [n for n in report.notes if n.startswith("disk-full")]
    if ROOT_USER:  # each fill took the disk, and says whether the journal had to wait it out
        fills = [f for f in report.faults if f.kind == "disk-full"]
        assert len(disk_notes) == len(fills) and all(" MB taken for " in f.note for f in fills), report.format()
    else:
        assert disk_notes == ["disk-full skipped: the run is not root, so it cannot mount a small tmpfs to fill"]


@pytest.mark.redis
def test_every_feature_under_every_fault_on_redis():
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not on PATH: run ./scripts/test.sh or apt-get install redis-server")
    report = run(chaos_run(FEATURES, 15, store="redis", duration=10, seed=8), 110)
    check_every_feature(report, REDIS_FAULTS)


@pytest.mark.timeout(170)
def test_stale_writes_let_through_are_caught_in_flows_of_parallel_steps_and_waits():
    # 40 flows: these flows spend most of their time waiting, and a frozen host must hold some
    # mid-step for its late writes to matter.
    report = run(chaos_run(FEATURES, 40, duration=10, faults=["stop-host"], seed=3, hosts=2,
                           fault_plan="journal:skip_fencing"), 150)
    assert not report.ok
    caught = {v.flow_id for v in report.violations if v.kind == RAN_AGAIN}
    fulfilments = {f for f in caught if "/" not in f and int(f[-4:]) % 5 < 3}  # DAG, timer, signals, child
    assert fulfilments, report.format()
    shutil.rmtree(report.work_dir)
    no_actor_left()


def test_a_journal_that_answers_before_committing_is_caught():
    out = cli("--flows", "12", "--faults", "", "--seed", "4", "--fault-plan", "journal:ack_before_commit=15", "--json")
    assert out.returncode == 6, out.stdout + out.stderr  # VIOLATIONS
    report = json.loads(out.stdout)
    assert report["ok"] is False
    caught = [v for v in report["violations"] if v["kind"] in (STEP_LOST, RAN_AGAIN)]
    assert caught, report["violations"]
    assert all(v["flow_id"].startswith("chaos-4-") and isinstance(v["position"], int) for v in caught)
    assert os.path.exists(os.path.join(report["work_dir"], "ledger.jsonl"))
    shutil.rmtree(report["work_dir"])
    no_actor_left()


def test_cli_prints_a_report_and_exits_zero():
    out = cli("--flows", "6", "--duration", "4", "--faults", "kill-worker,kill-journal", "--seed", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "violations: none" in out.stdout
    assert "flows: 6/6 complete" in out.stdout
    assert "chaos " in out.stderr  # the progress line


@pytest.mark.parametrize("args, message", [
    (["--faults", "kill-everything"], "unknown fault 'kill-everything'"),
    (["--schedule", "examples.orders:nope"], "has no function 'nope'"),
    (["--store", "memory://"], "memory:// store"),
])
def test_cli_usage_errors(args, message):
    out = cli(*args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr


def check_two_hosts(report, faults: set[str]) -> None:
    check_every_feature(report, faults | HOST_FAULTS)
    assert report.hosts == 2 and len(report.fenced_by_host) == 2
    assert report.supervisors >= 2 + report.faults_by_kind["kill-host"] + report.faults_by_kind["kill-supervisor"]
    assert "2 hosts of 2 workers" in report.format()


@pytest.mark.timeout(170)
def test_two_hosts_on_one_sqlite_file_under_every_fault():
    check_two_hosts(run(chaos_run(FEATURES, 15, duration=12, seed=11, hosts=2), 150), SQLITE_FAULTS)


@pytest.mark.redis
@pytest.mark.timeout(170)
def test_two_hosts_on_one_redis_under_every_fault():
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not on PATH: run ./scripts/test.sh or apt-get install redis-server")
    check_two_hosts(run(chaos_run(FEATURES, 15, store="redis", duration=12, seed=12, hosts=2), 150), REDIS_FAULTS)


def test_late_writes_of_a_frozen_host_are_refused():
    """A host frozen past its leases while holding flows: the other host takes them over, and
    every write the frozen one makes once thawed is refused; the report counts them by host."""
    report = run(chaos_run(MODULE, 16, duration=8, faults=["stop-host"], seed=2, hosts=2), 110)
    assert report.ok, report.format()
    assert sum(f.affected for f in report.faults) > 0, report.format()  # it froze flows in flight
    assert report.fenced > 0 and sum(report.fenced_by_host) == report.fenced, report.format()
    assert "writes refused by fencing: " in report.format() and "host-0" in report.format()
    no_actor_left()
