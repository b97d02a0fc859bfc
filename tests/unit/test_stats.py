"""What actors count for metrics: histogram buckets, a worker's step and flow counts, their sums
across incarnations, and the snapshot carrying them to and from its JSON file."""

import json

import pytest

from ergon_actors.core import FlowRecord
from ergon_actors.runtime.messages import Buckets, JournalStats, TypeCount, WorkerStats
from ergon_actors.runtime.snapshot import ActorInfo, Snapshot
from ergon_actors.runtime.stats import STEP_SECONDS, Histogram, WorkerCounts, add

pytestmark = pytest.mark.timeout(10)


def test_a_value_falls_in_the_first_bucket_whose_bound_is_not_below_it():
    histogram = Histogram((1.0, 2.0))
    for v in (0.5, 1.0, 1.5, 2.0, 7.0):
        histogram.observe(v)
    assert histogram.buckets() == Buckets((2, 2, 1), 12.0)


def test_a_worker_counts_step_bodies_and_the_flows_that_end():
    counts = WorkerCounts()
    run = counts.flow(FlowRecord("f1", "OrderFlow", b"", created_at=0.0))
    for outcome in ("completed", "failed", "interrupted"):
        run.step(0, "charge", 1).end(outcome)
    run.end("COMPLETE")
    counts.flow(FlowRecord("f2", "OrderFlow", b"")).end("SUSPENDED")  # not an end: not counted
    stats = counts.fill(WorkerStats(running=1))
    assert (stats.steps_started, stats.steps_completed, stats.steps_failed) == (3, 1, 1)
    assert sum(stats.step_seconds.counts) == 2 and len(stats.step_seconds.counts) == len(STEP_SECONDS) + 1
    assert stats.ended == (TypeCount("OrderFlow", "COMPLETE", 1),)
    assert stats.flow_seconds.counts[-1] == 1  # created at the epoch: past every bound
    assert stats.running == 1


def test_sums_add_counts_and_keep_the_newest_state():
    earlier = WorkerStats(running=5, started=3, steps_completed=4, step_seconds=Buckets((1, 2), 1.0),
                          ended=(TypeCount("A", "COMPLETE", 2),))
    later = WorkerStats(running=1, started=1, steps_completed=1, step_seconds=Buckets((0, 1), 0.5),
                        ended=(TypeCount("A", "COMPLETE", 1), TypeCount("B", "FAILED", 1)))
    total = add(earlier, later)
    assert (total.running, total.started, total.steps_completed) == (1, 4, 5)
    assert total.step_seconds == Buckets((1, 3), 1.5)
    assert set(total.ended) == {TypeCount("A", "COMPLETE", 3), TypeCount("B", "FAILED", 1)}
    assert add(None, later) is later
    assert add(WorkerStats(), later).step_seconds == later.step_seconds  # nothing counted before
    journal = add(JournalStats(commits=2, largest=9, store_failing_since=1.0), JournalStats(commits=1, largest=3))
    assert (journal.commits, journal.largest, journal.store_ok) == (3, 3, True)


def test_the_snapshot_keeps_totals_and_causes_through_its_json_file():
    worker = ActorInfo("worker-0", "worker", 10, 2, "w", True, True, 1, (-9,), 0.1,
                       WorkerStats(1, step_seconds=Buckets((1, 2), 0.5)), 1000, 1.5,
                       WorkerStats(4, ended=(TypeCount("A", "COMPLETE", 3),)), {"signal": 1})
    journal = ActorInfo("journal", "journal", 11, 1, None, True, True, 0, (), 0.1,
                        JournalStats(3, batch_commands=Buckets((1,), 1.0)), None, None, None, {})
    snapshot = Snapshot(1, "h", "memory://", 0.0, "running", "/tmp/x", 0, (worker, journal))
    assert Snapshot.from_dict(json.loads(json.dumps(snapshot.to_dict()))) == snapshot
