import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ergon_actors import SqliteExecutionLog
from tests.helpers import read_ledger, run, starts, wait_until

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


def start(db, ledger, hang: bool) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ERGON_TEST_HANG": "1" if hang else "0"}
    return subprocess.Popen([sys.executable, "-m", "tests.executor.crash_script", str(db), str(ledger)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_during_step_two_then_a_fresh_process_resumes(tmp_path):
    db, ledger = tmp_path / "flows.db", str(tmp_path / "ledger")
    first = start(db, ledger, hang=True)
    try:
        wait_until(lambda: 1 in starts(read_ledger(ledger)).get("crash", []), timeout=30,
                   what="step two to start")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate(timeout=10)
    assert first.returncode == -signal.SIGKILL

    second = start(db, ledger, hang=False)
    out, err = second.communicate(timeout=30)
    assert second.returncode == 0, err
    assert out.strip() == "COMPLETE one|two|three"
    assert starts(read_ledger(ledger))["crash"] == [0, 1, 1, 2]  # one once, two again, three once

    async def journal():
        store = await SqliteExecutionLog(db).connect()
        try:
            return [(s.position, s.name, s.status) for s in await store.load_steps("crash-1")]
        finally:
            await store.close()
    assert run(journal()) == [(0, "one", "COMPLETE"), (1, "two", "COMPLETE"), (2, "three", "COMPLETE")]
