import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOWS = "tests.runtime.flows"


@pytest.fixture
def cli(tmp_path):
    """Start `python -m ergon_actors ...` processes; every one still running is killed at teardown."""
    started: list[subprocess.Popen] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start(*args: str, extra_env: dict | None = None) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "ergon_actors", *args], cwd=ROOT,
                                env={**env, **(extra_env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
