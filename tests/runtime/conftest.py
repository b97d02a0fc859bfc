import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A suite started in the background of a non-interactive shell inherits SIGINT ignored, and so
# would every process it starts: the tests that press Ctrl-C on a run could not. A handler of
# this process's own is reset to the default in its children when they exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
FLOWS = "tests.runtime.flows"


def _processes(tmp_path, logged: bool):
    """A factory starting `python -m ergon_actors ...`, and the list of what it started.

    Output goes to pipes (read with communicate()), or with `logged` to files a test can read
    while the process runs (`proc.out_path`, `proc.err_path`, `proc.stderr_text()`), so a long
    or verbose run never blocks on a full pipe. `new_session` puts it in a process group of its
    own, which a test may signal as a terminal would (os.killpg).
    """
    started: list[subprocess.Popen] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start(*args: str, extra_env: dict | None = None, name: str | None = None,
              new_session: bool = False) -> subprocess.Popen:
        command = [sys.executable, "-m", "ergon_actors", *args]
        options = dict(cwd=ROOT, env={**env, **(extra_env or {})}, stdin=subprocess.DEVNULL,
                       start_new_session=new_session)
        if not logged:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options)
        else:
            name = name or f"cli{len(started)}"
            out_path, err_path = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                proc = subprocess.Popen(command, stdout=out, stderr=err, **options)
            proc.out_path, proc.err_path = out_path, err_path
            proc.stderr_text = lambda: err_path.read_text(errors="replace")
        started.append(proc)
        return proc

    return start, started


def _end(started: list[subprocess.Popen]) -> None:
    """Kill (by pid) and reap every process a test left running."""
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)


@pytest.fixture
def cli(tmp_path):
    """Start `python -m ergon_actors ...` processes with piped output; all end at teardown."""
    start, started = _processes(tmp_path, logged=False)
    yield start
    _end(started)


@pytest.fixture
def cli_logged(tmp_path):
    """Like `cli`, with each process's output in files (see _processes)."""
    start, started = _processes(tmp_path, logged=True)
    yield start
    _end(started)


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


@pytest.fixture
def temp_dir():
    """A short private temp folder for supervisors' run directories (ipc paths stay short)."""
    path = tempfile.mkdtemp(prefix="ergon-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)
