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
