"""A flow's history as `inspect --history` tells it, after real faults: its step is retried, it
sleeps on a timer, waits for a signal, loses its worker to SIGKILL, and a worker SIGSTOPped past
its lease writes late and is fenced."""

from __future__ import annotations

import os
import signal

import pytest

from .conftest import FLOWS, poll

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


def subsequence(wanted: list[tuple[str, dict]], events: list[dict]) -> list[tuple[str, dict]]:
    """The wanted (kind, details) pairs that the events do not hold in this order ("a|b": either kind)."""
    remaining = list(wanted)
    for event in events:
        if remaining and event["kind"] in remaining[0][0].split("|") and \
                all(event.get(k) == v for k, v in remaining[0][1].items()):
            remaining.pop(0)
    return remaining


def test_history_of_a_retried_timed_signalled_crashed_and_fenced_flow(cli, store_url):
    def history() -> list[dict]:
        return cli.json("inspect", "story", "--json", "--store", store_url)["history"]

    def has(kind: str, **details: object) -> bool:
        return any(e["kind"] == kind and all(e.get(k) == v for k, v in details.items()) for e in history())

    def pid_of(step: str) -> int:
        return poll(lambda: next((int(pid) for fid, name, pid in cli.ledger_lines() if name == step), None),
                    f"step {step} starts")

    cli("schedule", f"{FLOWS}:Story", "--args", '{"key": "s"}', "--id", "story", "--store", store_url)
    runner = cli.start("run", FLOWS, "--store", store_url, "--workers", "2", "--lease", "5s",
                       env={"ERGON_HANG_TIMEOUT": "2m"})
    poll(lambda: has("signal_waiting", name="go-s"), "the flow waits for its signal", 60)
    assert cli("signal", "go-s", "--store", store_url).returncode == 0
    os.kill(pid_of("crash"), signal.SIGKILL)  # its worker dies mid-step
    zombie = pid_of("zombie")
    os.kill(zombie, signal.SIGSTOP)  # past its lease: another worker takes the flow over
    try:
        poll(lambda: has("signal_waiting", name="finish-s"), "another worker finishes the zombie step", 60)
        (cli.markers / "wake-s").touch()
    finally:
        os.kill(zombie, signal.SIGCONT)  # its late write of the step must be refused
    poll(lambda: has("fenced"), "the late write is fenced", 60)
    assert cli("signal", "finish-s", "--store", store_url).returncode == 0
    shown = poll(lambda: (lambda d: d["status"] == "COMPLETE" and d)(
        cli.json("inspect", "story", "--json", "--store", store_url)), "the flow completes", 60)
    assert shown["result"] == "flaky-ok None crash-ok zombie-ok None"
    events = shown["history"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert subsequence([
        ("scheduled", {"type": "Story"}),
        ("claimed", {"epoch": 1}),
        ("step_failed", {"name": "flaky", "tries": 1, "error": "builtins:ConnectionError"}),
        ("retry_scheduled", {"step": "flaky"}),
        ("step_completed", {"name": "flaky", "tries": 2}),
        ("timer_set", {"name": "nap"}),
        ("timer_fired", {"name": "nap"}),
        ("signal_waiting", {"name": "go-s"}),
        ("signal_received", {"name": "go-s"}),
        ("released|crashed", {}),  # the supervisor releases a dead worker's flows, or records its crash
        ("step_completed", {"name": "crash"}),
        ("lease_expired", {}),
        ("step_completed", {"name": "zombie"}),
        ("signal_waiting", {"name": "finish-s"}),
        ("fenced", {"command": "AppendStep"}),
        ("signal_received", {"name": "finish-s"}),
        ("completed", {}),
    ], events) == []
    fenced = next(e for e in events if e["kind"] == "fenced")
    assert fenced["reason"].startswith("flow is at epoch")
    assert cli.runs("story").count("zombie") == 2 and cli.runs("story").count("crash") == 2

    text = cli("inspect", "story", "--history", "--store", store_url).stdout
    for kind in ("lease_expired", "fenced", "timer_fired", "signal_received"):
        assert f" {kind} " in text or text.rstrip().endswith(kind), kind
    runner.terminate()
    assert runner.wait(timeout=60) == 0, runner.err_path.read_text()
