"""Retry loops: jittered exponential backoff, and failures logged once per interval."""

import logging
import random
import time

import pytest

from ergon_actors.core.backoff import Backoff, FailureLog

pytestmark = pytest.mark.timeout(20)


def test_delays_double_up_to_the_maximum_each_drawn_from_the_upper_half_of_its_step():
    random.seed(7)
    backoff = Backoff(0.1, 1.0)
    steps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    delays = [backoff.next() for _ in steps]
    assert all(step / 2 <= delay <= step for step, delay in zip(steps, delays, strict=True))
    backoff.reset()
    assert 0.05 <= backoff.next() <= 0.1


def test_many_loops_failing_together_retry_at_different_times():
    delays = {round(Backoff(1.0, 10.0).next(), 6) for _ in range(50)}
    assert len(delays) > 40


def test_a_loop_failing_fast_logs_its_first_failure_then_one_line_per_interval(caplog):
    caplog.set_level(logging.INFO)
    failures = FailureLog(logging.getLogger("test.retry"), "claiming", interval=0.2)
    for _ in range(1000):
        failures.failed(OSError("disk full"))
    assert [r.getMessage() for r in caplog.records] == [
        "claiming failed; retrying with backoff: OSError: disk full"]
    deadline = time.monotonic() + 10
    while len(caplog.records) < 2:  # the next failure after the interval writes the next line
        assert time.monotonic() < deadline
        failures.failed(OSError("still full"))
        time.sleep(0.01)
    summary = caplog.records[1].getMessage()
    assert summary.startswith("claiming failed ") and "more times in the last" in summary
    assert int(summary.split()[2]) >= 1000 and summary.endswith("OSError: still full")
    failures.recovered()
    assert caplog.records[2].getMessage().startswith("claiming works again after ")
    failures.recovered()
    failures.failed(OSError("again"))
    assert len(caplog.records) == 4 and "retrying with backoff" in caplog.records[3].getMessage()
