"""The command line as a user runs it: `python -m ergon_actors ...` subprocesses on a real SQLite
file or a real redis-server of the test's own.

    def test_x(cli, store_url):
        out = cli("list", "--store", store_url)       # a finished run (CompletedProcess)
        proc = cli.start("run", FLOWS, "--store", store_url)   # a running one, ended at teardown
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import pytest

from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
FLOWS = "tests.cli.flows"


class Cli:
    """Runs the command line with PYTHONPATH at the repository, the test ledger and marker folder
    set; every process it starts is ended (by its pid) at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.ledger = tmp_path / "ledger.txt"
        self.markers = tmp_path / "markers"
        self.markers.mkdir()
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "OPS_TEST_LEDGER": str(self.ledger),
                    "OPS_TEST_DIR": str(self.markers)}
        for name in [n for n in self.env if n.startswith("ERGON_") or n == "NO_COLOR"]:
            del self.env[name]  # the tests choose every setting themselves
        self.started: list[subprocess.Popen[str]] = []

    def __call__(self, *args: str, env: dict[str, str] | None = None, input: str | None = None,
                 cwd: Path | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ergon_actors", *args], cwd=cwd or ROOT, input=input,
                              capture_output=True, text=True, timeout=timeout, env={**self.env, **(env or {})},
                              stdin=None if input is not None else subprocess.DEVNULL)

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        out = self(*args, env=env)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def start(self, *args: str, env: dict[str, str] | None = None, name: str = "run") -> subprocess.Popen[str]:
        """A process left running, its output in files (`proc.out_path`, `proc.err_path`)."""
        out_path, err_path = self.tmp_path / f"{name}.out", self.tmp_path / f"{name}.err"
        with open(out_path, "w") as out, open(err_path, "w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "ergon_actors", *args], cwd=ROOT, stdout=out,
                                    stderr=err, stdin=subprocess.DEVNULL, text=True,
                                    env={**self.env, **(env or {})})
        proc.out_path, proc.err_path = out_path, err_path  # type: ignore[attr-defined]
        self.started.append(proc)
        return proc

    def ledger_lines(self) -> list[list[str]]:
        """The ledger: [flow_id, step, pid] per step run, in order."""
        return [line.split() for line in self.ledger.read_text().splitlines()] if self.ledger.exists() else []

    def runs(self, flow_id: str) -> list[str]:
        """The steps of one flow that ran, in order."""
        return [step for fid, step, _ in self.ledger_lines() if fid == flow_id]

    def end(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path)
    try:
        yield runner
    finally:
        runner.end()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL: a SQLite file (not created yet) or a redis-server of this test's own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/flows.db"
        return
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server.url
    finally:
        server.stop()


def poll(check: Callable[[], Any], what: str, deadline: float = 30.0) -> Any:
    """Call `check` until it returns something true; fail naming `what` after `deadline` seconds."""
    until = time.monotonic() + deadline
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < until, f"{what}: not within {deadline}s"
        time.sleep(0.1)
