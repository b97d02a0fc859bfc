"""Operating flows from the command line on SQLite and on Redis: list, inspect, retry, fork,
cancel, signal, as subprocesses against a real store."""

from __future__ import annotations

import json

import pytest

from .conftest import FLOWS, poll

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


def run_until_idle(cli, store_url, *extra):
    out = cli("run", FLOWS, "--store", store_url, "--workers", "1", "--until-idle", "--quiet", *extra,
              timeout=150)
    assert out.returncode == 0, out.stderr
    return out


def test_retry_and_fork_after_a_crash_never_run_completed_steps_again(cli, store_url):
    flow_id = cli("schedule", f"{FLOWS}:Ledgered", "--args", '{"key": "k1"}', "--id", "led-1",
                  "--store", store_url).stdout.split()[-1]
    run_until_idle(cli, store_url)  # the worker dies in `second`; the re-run fails: FAILED
    shown = cli.json("inspect", flow_id, "--json", "--store", store_url)
    assert shown["status"] == "FAILED" and shown["error"]["type"] == "builtins:ValueError"
    assert "second step of k1 is broken" in shown["error"]["traceback"]
    assert [(s["name"], s["status"]) for s in shown["steps"]] == [("first", "COMPLETE"), ("second", "FAILED")]
    assert cli.runs(flow_id) == ["first", "second", "second"]
    ends = [k for k in (e["kind"] for e in shown["history"]) if k in ("released", "crashed", "failed")]
    assert ends in (["released", "failed"], ["crashed", "failed"])  # the worker's death, then the failure

    (cli.markers / "fixed").touch()
    retried = cli("retry", flow_id, "--store", store_url)
    assert retried.returncode == 0, retried.stderr
    assert "attempt 2" in retried.stdout and "completed steps replay (1)" in retried.stdout
    run_until_idle(cli, store_url)
    done = cli.json("inspect", flow_id, "--json", "--store", store_url)
    assert (done["status"], done["attempt"], done["result"]) == ("COMPLETE", 2, "first-k1+second+third")
    assert cli.runs(flow_id) == ["first", "second", "second", "second", "third"]  # `first` ran once

    forked = cli("fork", flow_id, "--from-step", "2", "--id", "led-fork", "--store", store_url)
    assert forked.returncode == 0, forked.stderr
    assert forked.stdout.split()[-1] == "led-fork" and "2 steps reused" in forked.stderr
    run_until_idle(cli, store_url)
    fork = cli.json("inspect", "led-fork", "--json", "--store", store_url)
    assert fork["result"] == "first-k1+second+third"
    assert cli.runs("led-fork") == ["third"]  # the steps before 2 were reused, not run
    assert cli.runs(flow_id) == ["first", "second", "second", "second", "third"]
    assert [e["kind"] for e in fork["history"]][:2] == ["scheduled", "forked"]

    again = cli("retry", flow_id, "--store", store_url)
    assert again.returncode == 7 and "is COMPLETE: cannot retry it" in again.stderr
    taken = cli("fork", flow_id, "--from-step", "1", "--id", "led-fork", "--store", store_url)
    assert taken.returncode == 7 and "flow id 'led-fork' is taken" in taken.stderr


def test_list_pages_filters_and_sorts(cli, store_url):
    for i in range(7):
        cli("schedule", f"{FLOWS}:Slow", "--args", '{"seconds": 0}', "--id", f"slow-{i}", "--store", store_url)
    cli("schedule", f"{FLOWS}:Waiter", "--args", '{"name": "w"}', "--id", "waiter", "--store", store_url)
    seen, cursor = [], None
    while True:
        args = ["list", "--json", "--limit", "3", "--store", store_url] + (["--cursor", cursor] if cursor else [])
        page = cli.json(*args)
        assert len(page["flows"]) <= 3
        seen += [f["flow_id"] for f in page["flows"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == ["waiter"] + [f"slow-{i}" for i in reversed(range(7))]
    oldest = cli("list", "--oldest-first", "--all", "--jsonl", "--limit", "2", "--store", store_url)
    assert [json.loads(line)["flow_id"] for line in oldest.stdout.splitlines()] == seen[::-1]
    assert [f["flow_id"] for f in cli.json("list", "--type", "Waiter", "--json", "--store", store_url)["flows"]] \
        == ["waiter"]
    assert cli.json("list", "--id", "slow-3", "--json", "--store", store_url)["flows"][0]["flow_id"] == "slow-3"
    assert cli.json("list", "--since", "1h", "--status", "pending", "--json", "--store", store_url)["flows"]
    assert cli.json("list", "--until", "1h", "--json", "--store", store_url)["flows"] == []
    table = cli("list", "--limit", "2", "--store", store_url)
    assert table.stdout.splitlines()[0].split()[:3] == ["FLOW_ID", "CLASS", "STATUS"]
    assert "waiter" in table.stdout and "2 flows; next page: --cursor " in table.stderr


def test_signal_and_cancel_tell_what_happened(cli, store_url):
    cli("schedule", f"{FLOWS}:Waiter", "--args", '{"name": "early"}', "--id", "w1", "--store", store_url)
    early = cli("signal", "early", "--data", '{"n": 1}', "--store", store_url)
    assert early.returncode == 0 and "no flow waits for it yet: it is kept" in early.stdout
    twice = cli("signal", "early", "--data", "2", "--store", store_url)
    assert twice.returncode == 7 and "was sent before; this one was dropped" in twice.stderr
    run_until_idle(cli, store_url)
    assert cli.json("inspect", "w1", "--json", "--store", store_url)["result"] == {"n": 1}

    for i in range(3):
        cli("schedule", f"{FLOWS}:Waiter", "--args", f'{{"name": "late-{i}"}}', "--id", f"late-{i}",
            "--store", store_url)
    run_until_idle(cli, store_url)  # all three wait for their signal now
    waiting = cli.json("inspect", "late-0", "--json", "--store", store_url)
    assert waiting["waiting"]["description"] == "signal 'late-0'"
    sent = cli("signal", "late-0", "--store", store_url)
    assert "sent: the flow waiting for it resumes" in sent.stdout

    ended = cli("cancel", "w1", "--store", store_url)
    assert ended.returncode == 7 and "already ended COMPLETE: nothing to cancel" in ended.stderr
    unasked = cli("cancel", "--id", "late-", "--store", store_url)
    assert unasked.returncode == 8 and "3 flows match" in unasked.stderr and "--yes" in unasked.stderr
    assert {f["status"] for f in cli.json("list", "--id", "late-", "--json", "--store", store_url)["flows"]} \
        == {"SUSPENDED"}  # nothing was cancelled (late-0 is due: its signal came)
    done = cli("cancel", "--id", "late-", "--status", "suspended,running", "--yes", "--store", store_url)
    assert done.returncode == 0 and "cancelled 3;" in done.stdout
    statuses = {f["flow_id"]: f["status"] for f in cli.json("list", "--json", "--store", store_url)["flows"]}
    assert statuses == {"w1": "COMPLETE", "late-0": "CANCELLED", "late-1": "CANCELLED", "late-2": "CANCELLED"}
    nothing = cli("cancel", "--status", "failed", "--yes", "--store", store_url)
    assert nothing.returncode == 0 and "nothing to cancel" in nothing.stdout


def test_inspect_follow_streams_the_history_until_the_flow_ends(cli, store_url):
    cli("schedule", f"{FLOWS}:Waiter", "--args", '{"name": "go"}', "--id", "f1", "--store", store_url)
    runner = cli.start("run", FLOWS, "--store", store_url, "--workers", "1", "--quiet")
    poll(lambda: cli.json("inspect", "f1", "--json", "--store", store_url)["status"] == "SUSPENDED",
         "the flow waits for its signal")
    follow = cli.start("inspect", "f1", "--follow", "--json", "--store", store_url, name="follow")
    poll(lambda: follow.out_path.read_text().count("\n") >= 1, "inspect --follow prints the flow")
    cli("signal", "go", "--data", '"hello"', "--store", store_url)
    assert follow.wait(timeout=60) == 0, follow.err_path.read_text()
    lines = [json.loads(line) for line in follow.out_path.read_text().splitlines()]
    assert lines[0]["status"] == "SUSPENDED"
    assert [e["kind"] for e in lines[1:]] == ["claimed", "signal_received", "completed"]
    assert lines[1]["seq"] == lines[0]["history"][-1]["seq"] + 1
    runner.terminate()
    assert runner.wait(timeout=60) == 0
