"""`run` as an operator sees it: under a pseudo-terminal (a banner, a live progress line, colour
unless NO_COLOR), with output to files (a periodic progress line), its logs, and the summary of
what this run did; and `cancel` asking for confirmation on a terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest

from .conftest import FLOWS, ROOT

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def on_terminal(cli, *args: str, env: dict | None = None, answer: bytes | None = None) -> tuple[int, str]:
    """Run the command line on a pseudo-terminal; returns its exit code and everything it showed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "ergon_actors", *args], cwd=ROOT, stdin=follower,
                            stdout=follower, stderr=follower, env={**cli.env, **(env or {})})
    os.close(follower)
    shown = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal closed: the process ended
                    break
                if not chunk:
                    break
                shown += chunk
                if answer is not None and b"[y/N]" in shown:
                    os.write(leader, answer)
                    answer = None
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=30), shown.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        os.close(leader)


def schedule_slow(cli, store: str, n: int, seconds: float) -> None:
    for _ in range(n):
        out = cli("schedule", f"{FLOWS}:Slow", "--args", json.dumps({"seconds": seconds}), "--store", store)
        assert out.returncode == 0, out.stderr


def test_run_on_a_terminal_shows_a_banner_live_progress_and_a_summary(cli, tmp_path):
    store = f"sqlite:///{tmp_path}/flows.db"
    schedule_slow(cli, store, 3, 1.5)
    code, shown = on_terminal(cli, "run", FLOWS, "--store", store, "--workers", "1", "--until-idle")
    assert code == 0, shown
    assert "\x1b[1mergon_actors " in shown  # bold on a terminal
    assert f"store {store} · 1 worker x 256 flows · pid " in shown
    assert "serving Ledgered, Slow, Story, Values, Waiter (from tests.cli.flows) · Ctrl-C drains" in shown
    assert "\r\x1b[2K" in shown and " running, " in shown and " flows/s · 0:00:0" in shown  # the live line
    assert "this run: 3 completed, 0 failed, 0 cancelled in " in shown
    assert "flows: complete 3" in shown


def test_no_color_turns_colour_off_on_a_terminal(cli, tmp_path):
    store = f"sqlite:///{tmp_path}/flows.db"
    schedule_slow(cli, store, 1, 0.0)
    code, shown = on_terminal(cli, "list", "--store", store, env={"NO_COLOR": "1"})
    assert code == 0 and "Slow" in shown and "\x1b[" not in shown
    code, coloured = on_terminal(cli, "list", "--store", store)
    assert code == 0 and "\x1b[" in coloured


def test_run_without_a_terminal_prints_progress_lines_logs_failures_and_what_it_did(cli, tmp_path):
    store = f"sqlite:///{tmp_path}/flows.db"
    schedule_slow(cli, store, 2, 1.5)
    cli("schedule", f"{FLOWS}:Ledgered", "--args", '{"key": "x"}', "--id", "bad", "--store", store)
    done = cli("run", FLOWS, "--store", store, "--workers", "1", "--until-idle", "--progress-every", "0.5",
               "--log-format", "json")
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stderr + done.stdout  # no colour and no redrawn line off a terminal
    assert "progress: " in done.stderr and "flows/s" in done.stderr
    assert done.stdout.splitlines() == [done.stdout.splitlines()[0], "flows: complete 2, failed 1"]
    assert done.stdout.startswith("this run: 2 completed, 1 failed, 0 cancelled in ")
    failures = [line for line in done.stderr.splitlines() if "flow bad (Ledgered) failed" in line]
    assert failures and "WARNING" in failures[0]  # a failure is visible at the default level
    again = cli("run", FLOWS, "--store", store, "--until-idle", "--quiet", "-v", "--log-format", "json")
    records = [json.loads(line) for line in again.stderr.splitlines() if line.strip()]  # every line
    assert records and all(r["logger"].startswith("ergon_actors") for r in records)
    assert {"time", "level", "logger", "message", "pid"} <= set(records[0])
    assert any(r.get("actor", "").startswith("journal") for r in records)  # the actors log JSON too
    assert again.stdout.startswith("this run: 0 completed, 0 failed, 0 cancelled in ")


def test_bulk_cancel_asks_on_a_terminal(cli, tmp_path):
    store = f"sqlite:///{tmp_path}/flows.db"
    schedule_slow(cli, store, 2, 0.0)
    code, shown = on_terminal(cli, "cancel", "--all", "--store", store, answer=b"n\n")
    assert code == 8 and "cancel 2 flows (" in shown and "nothing cancelled" in shown
    code, shown = on_terminal(cli, "cancel", "--all", "--store", store, answer=b"y\n")
    assert code == 0 and "cancelled 2;" in shown
