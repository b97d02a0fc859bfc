"""Cron schedules and prune from the command line, on SQLite and on Redis: `schedule --cron`,
`schedules`, `prune`, and `run` starting the schedules' flows."""

from __future__ import annotations

import pytest

from .conftest import FLOWS, poll

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


def test_schedule_list_pause_resume_delete(cli, store_url):
    made = cli("schedule", f"{FLOWS}:Slow", "--args", '{"seconds": 0.01}', "--cron", "*/5 * * * *",
               "--name", "five", "--missed", "skip", "--store", store_url)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("next tick ") and "flow five@" in made.stdout
    shown = cli.json("schedules", "--json", "--store", store_url)
    assert [(s["name"], s["cron"], s["class"], s["missed"], s["paused"], s["args"]) for s in shown] == [
        ("five", "*/5 * * * *", "Slow", "skip", False, {"seconds": 0.01})]
    assert shown[0]["next_tick"].endswith(("0:00Z", "5:00Z"))
    table = cli("schedules", "--store", store_url).stdout.splitlines()
    assert table[0].split() == ["NAME", "CRON", "CLASS", "MISSED", "STATE", "NEXT", "TICK", "(UTC)"]
    assert table[1].split()[:7] == ["five", "*/5", "*", "*", "*", "*", "Slow"]
    paused = cli("schedules", "pause", "five", "--store", store_url)
    assert paused.returncode == 0 and paused.stdout.strip() == "schedule 'five' paused"
    assert cli.json("schedules", "--json", "--store", store_url)[0]["next_tick"] is None
    resumed = cli("schedules", "resume", "five", "--store", store_url)
    assert resumed.returncode == 0 and "next tick" in resumed.stdout
    deleted = cli("schedules", "delete", "five", "--store", store_url)
    assert deleted.returncode == 0 and "deleted" in deleted.stdout
    assert "no schedules" in cli("schedules", "--store", store_url).stdout
    missing = cli("schedules", "pause", "five", "--store", store_url)
    assert missing.returncode == 4 and "no schedule named 'five'" in missing.stderr


@pytest.mark.parametrize("args, message", [
    (["--cron", "61 * * * *"], "Bad minute"),
    (["--cron", "* * *"], "has 3 fields"),
    (["--name", "x"], "--name names a cron schedule"),
    (["--cron", "* * * * *", "--id", "x"], "leave out --id and --delay"),
])
def test_bad_schedules_are_usage_errors(cli, tmp_path, args, message):
    out = cli("schedule", f"{FLOWS}:Slow", "--args", '{"seconds": 1}', *args, "--store", f"sqlite:///{tmp_path}/s.db")
    assert out.returncode == 2 and message in out.stderr, out.stderr


def test_run_starts_a_flow_per_tick_and_prune_deletes_them(cli, store_url):
    made = cli("schedule", f"{FLOWS}:Slow", "--args", '{"seconds": 0.01}', "--cron", "* * * * * *",
               "--name", "sec", "--store", store_url)
    assert made.returncode == 0, made.stderr
    cli.start("run", FLOWS, "--store", store_url, "--workers", "1")

    def complete() -> int:
        return cli.json("status", "--json", "--store", store_url)["counts"].get("COMPLETE", 0)

    poll(lambda: complete() >= 3, "three tick flows complete", deadline=90)
    assert cli("schedules", "pause", "sec", "--store", store_url).returncode == 0
    listed = cli.json("list", "--json", "--store", store_url, "--limit", "1000")["flows"]
    assert listed and all(f["flow_id"].startswith("sec@") for f in listed)
    refused = cli("prune", "--older-than", "0", "--status", "complete,running", "--store", store_url)
    assert refused.returncode == 2 and "ended flows only" in refused.stderr
    pruned = cli.json("prune", "--older-than", "0s", "--status", "complete", "--json", "--store", store_url)
    assert pruned["deleted"] >= 3 and pruned["statuses"] == ["COMPLETE"]
    assert cli.json("status", "--json", "--store", store_url)["counts"].get("COMPLETE", 0) <= 1  # one may end now
    kept = cli.json("prune", "--older-than", "1d", "--json", "--store", store_url)
    assert kept["deleted"] == 0
