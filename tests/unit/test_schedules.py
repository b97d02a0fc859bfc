"""Which ticks of a cron schedule are due, under each missed policy (storage.schedules)."""

from dataclasses import replace

import pytest

from ergon_actors.errors import ConfigError
from ergon_actors.storage.schedules import (MAX_TICKS, check_cron, due_ticks, next_tick, plan_fires,
                                            tick_id)
from ergon_actors.storage.upkeep_commands import CronSchedule

pytestmark = pytest.mark.timeout(20)

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a multiple of 10
EVERY_10S = CronSchedule("s", "*/10 * * * * *", "T", b"", "once", False, START, 1, START)


def test_ticks_not_yet_missed_all_start_and_none_twice():
    assert due_ticks(EVERY_10S, START + 9.9) is None
    assert due_ticks(EVERY_10S, START + 35) == ([START + 10, START + 20, START + 30], START + 30)
    assert due_ticks(replace(EVERY_10S, last_tick=START + 30), START + 35) is None


@pytest.mark.parametrize("policy, missed", [("skip", []), ("once", [START + 140]), ("all", None)])
def test_missed_ticks_follow_the_policy(policy, missed):
    now = START + 200.5  # ticks up to START + 140 are more than 60 s old
    ticks, through = due_ticks(replace(EVERY_10S, missed=policy), now, missed_after=60)
    recent = [START + 150 + 10 * i for i in range(6)]
    if missed is None:
        missed = [START + 10 * i for i in range(1, 15)]
    assert ticks == missed + recent and through == START + 200


def test_a_long_backlog_under_all_is_started_in_passes():
    s = replace(EVERY_10S, missed="all")
    ticks, through = due_ticks(s, START + 10 * (MAX_TICKS + 500))
    assert len(ticks) == MAX_TICKS and through == ticks[-1] == START + 10 * MAX_TICKS
    rest, _ = due_ticks(replace(s, last_tick=through), START + 10 * (MAX_TICKS + 500))
    assert rest[0] == through + 10 and len(rest) == 500


def test_plan_fires_skips_paused_and_unreadable_schedules_and_names_each_tick():
    broken = replace(EVERY_10S, name="broken", cron="not a cron")
    paused = replace(EVERY_10S, name="paused", paused=True)
    (fire,) = plan_fires([broken, paused, EVERY_10S], START + 20)
    assert (fire.name, fire.revision, fire.ticks, fire.through) == ("s", 1, (START + 10, START + 20), START + 20)
    assert fire.flow_ids == ("s@2027-01-15T08:00:10Z", "s@2027-01-15T08:00:20Z")
    assert next_tick([broken, paused, EVERY_10S], START + 20) == START + 30
    assert next_tick([paused], START) is None
    assert tick_id("s", START) == "s@2027-01-15T08:00:00Z"


@pytest.mark.parametrize("expression, message", [
    ("* * *", "has 3 fields"), ("61 * * * *", "Bad minute"), ("0 0 30 2 *", "Bad day-of-month"),
])
def test_bad_expressions_are_named(expression, message):
    with pytest.raises(ConfigError, match=message):
        check_cron(expression)
    assert check_cron("0 6 * * MON-FRI") == "0 6 * * MON-FRI"
