"""How soon the next `run` goes on after a whole supervisor tree was SIGKILLed.

Run from the repository root:

    python scripts/bench_restart.py [--rounds 5]

Each round: flows are scheduled into a fresh SQLite file, `python -m ergon_actors run` (default
settings: a 15 s lease) starts them, the supervisor is SIGKILLed mid-step (its actors die with
it), and a second `run` starts on the same file. Measured: from the second supervisor being
ready (its status snapshot says running) to the first step start of one of the dead tree's
flows. Without the takeover of a dead tree's leases that is the rest of a 15 s lease.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ergon_actors.runtime import rundir  # noqa: E402
from tests.helpers import read_ledger, wait_until  # noqa: E402
from tests.runtime.flows import LedgerFlow  # noqa: E402
from tests.runtime.test_faults import _schedule  # noqa: E402

FLOWS = "tests.runtime.flows"


def start(db: str, runs: str) -> subprocess.Popen[bytes]:
    # TMPDIR: run directories of its own, which no other supervisor on the machine removes first
    env = {**os.environ, "PYTHONPATH": ROOT, "TMPDIR": runs}
    return subprocess.Popen([sys.executable, "-m", "ergon_actors", "run", FLOWS, "--store", f"sqlite:///{db}",
                             "--workers", "2"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def ready_at(pid: int, runs: str) -> float | None:
    """time.time() once the supervisor `pid` reports its pool started, else None."""
    for snap in rundir.snapshots(runs):
        if snap.pid == pid and snap.state == "running":
            return time.time()
    return None


def one_round(tmp: str, n: int) -> tuple[float, float]:
    db, ledger = os.path.join(tmp, f"r{n}.db"), os.path.join(tmp, f"r{n}.ledger")
    keys = [f"r{n}-f{i}" for i in range(6)]
    asyncio.run(_schedule(db, [LedgerFlow(k, ledger, "sleep:0.2", steps=50) for k in keys]))
    runs = tempfile.mkdtemp(prefix="r", dir=tmp)
    first = start(db, runs)
    try:
        wait_until(lambda: len({e["key"] for e in read_ledger(ledger)}) == len(keys), 60, 0.005, "every flow under way")
        children = psutil.Process(first.pid).children(recursive=True)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        psutil.wait_procs(children, timeout=5)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    began = time.time()
    second = start(db, runs)
    try:
        ready = wait_until(lambda: ready_at(second.pid, runs), 60, 0.005, "the second supervisor to be ready")
        mine = {p.pid for p in psutil.Process(second.pid).children(recursive=True)}
        step = wait_until(lambda: min((e["t"] for e in read_ledger(ledger) if e["event"] == "start" and e["t"] > began
                                       and e["pid"] in mine), default=None), 60, 0.005, "a step of the second run")
    finally:
        second.send_signal(signal.SIGKILL)
        second.wait()
        for child in psutil.Process().children(recursive=True):
            child.kill()
    return ready - began, step - ready


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    a = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        rounds = [one_round(tmp, n) for n in range(a.rounds)]
    starts, steps = [r[0] for r in rounds], [r[1] for r in rounds]
    print(f"second run: start -> ready  p50 {statistics.median(starts):.3f}s  max {max(starts):.3f}s")
    print(f"second run: ready -> first step of the dead tree's flows  p50 {statistics.median(steps):.3f}s  "
          f"max {max(steps):.3f}s  (target < 1 s)")


if __name__ == "__main__":
    main()
