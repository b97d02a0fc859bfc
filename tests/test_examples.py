"""Every example runs as it is (smoke tests)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=150,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_quickstart_prints_the_pyergon_result(tmp_path):
    out = run([str(ROOT / "examples" / "quickstart.py")], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "Result: payment-ORD-001"


def test_demo_kills_a_worker_and_loses_nothing(tmp_path):
    env_store = f"sqlite:///{tmp_path}/demo.db"
    out = subprocess.run([sys.executable, "-m", "examples.demo"], cwd=ROOT, capture_output=True, text=True,
                         timeout=150, env={**os.environ, "PYTHONPATH": str(ROOT), "ERGON_STORE": env_store})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "300 orders completed" in out.stdout
    assert "completed steps that ran twice: 0" in out.stdout


@pytest.mark.parametrize("example, expected", [
    ("timers.py", ["[ORD-002] Fraud check complete"]),
    ("signals.py", ["flow is SUSPENDED while it waits", "Result: approved"]),
    ("child_flows.py", ["Result: Order complete: PAYMENT-ORD-7"]),
    ("retry_policies.py", ["book: COMPLETE after 3 attempt(s): paid for book",
                           "missing: FAILED after 1 attempt(s): ItemNotFoundError: no such item: missing"]),
    ("dag.py", ["journal: 0:fetch_user, 1:check_inventory, 2:get_pricing, 3:validate"]),
    ("cancel_and_timeouts.py", ["report: FAILED: StepTimeoutError: step 'render' ran longer than 0.5s",
                                "approval: CANCELLED"]),
    ("schedules.py", ["at least 3 flows, one a second: True", "each returned: ['sales report for north']",
                      "schedule 'sales' paused: True"]),
    ("retention.py", ["complete: 20", "pruned: 20", "complete after prune: 0", "invoice 99 sent",
                      "invoice-99 deleted by the retention setting"]),
    ("versioning.py", ["A: v1: packed, shipped", "B: v2: checked, packed, shipped",
                       "migrated 1 flow from version 1 to version 2", "C: v2: packed, shipped",
                       "journal of C: pack, signal:truck-C, ship"]),
])
def test_feature_examples(tmp_path, example, expected):
    out = run([str(ROOT / "examples" / example)], tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for line in expected:
        assert line in lines, out.stdout


def test_the_queues_example_shows_each_limit_held(tmp_path):
    out = run([str(ROOT / "examples" / "queues.py")], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "dedup: scheduling the welcome email again returned welcome-zoe", "10 emails sent",
        "at most 2 at once (limit 2)", "at most 1 per customer at once (limit 1)",
        "priority 10 ran in the first pair: True", "at most 5 started in any second (limit 5)"]


def test_the_embedding_example_runs_from_any_directory(tmp_path):
    site = tmp_path / "site"  # ergon_actors importable as if installed, the repository not on the path
    site.mkdir()
    (site / "ergon_actors").symlink_to(ROOT / "ergon_actors")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "embed.py")], cwd=elsewhere, capture_output=True,
                         text=True, timeout=150, env={**os.environ, "PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "shipped-A1"
    assert list(elsewhere.iterdir()) == []  # its store was a temporary file


def test_the_operate_example_fails_while_payments_are_down_and_completes_once_retried(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ERGON_STORE": f"sqlite:///{tmp_path}/shop.db"}
    env.pop("PAYMENTS_DOWN", None)

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ergon_actors", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=150, env={**env, **extra})

    assert cli("schedule", "examples.operate:Payment", "--args", '{"order_id": "A1", "amount": "12.50"}',
               "--id", "pay-A1").returncode == 0
    down = cli("run", "examples.operate", "--until-idle", "--quiet", PAYMENTS_DOWN="1")
    assert "this run: 0 completed, 1 failed" in down.stdout, down.stderr
    assert cli("retry", "pay-A1").returncode == 0
    up = cli("run", "examples.operate", "--until-idle", "--quiet")
    assert "this run: 1 completed, 0 failed" in up.stdout, up.stderr
    shown = cli("inspect", "pay-A1")
    assert "result: 'receipt A1: 12.50'" in shown.stdout
