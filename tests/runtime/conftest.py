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


@pytest.fixture
def cli_logged(tmp_path):
    """Like `cli`, but each process writes its stdout and stderr to files instead of pipes.

    A long or verbose run never blocks on a full pipe, and a test can read the log while the
    process runs: `proc.out_path` and `proc.err_path` (read with `proc.stderr_text()`). Every
    process still running at teardown is killed (SIGKILL) and reaped.
    """
    started: list[subprocess.Popen] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start(*args: str, extra_env: dict | None = None, name: str | None = None) -> subprocess.Popen:
        name = name or f"cli{len(started)}"
        out_path, err_path = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "ergon_actors", *args], cwd=ROOT,
                                    env={**env, **(extra_env or {})}, stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL)
        proc.out_path, proc.err_path = out_path, err_path
        proc.stderr_text = lambda: err_path.read_text(errors="replace")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own (AOF, appendfsync always) on a free loopback port.

    The test may kill and restart it (`own_redis.kill()`, `own_redis.start()`) without
    disturbing any other test; it is stopped at teardown.
    """
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()
