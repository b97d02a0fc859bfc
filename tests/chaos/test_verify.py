"""The chaos verifier on hand-made journals and ledgers: each rule fires when, and only when, it should."""

from ergon_actors.chaos.ledger import LedgerEntry
from ergon_actors.chaos.report import ChaosReport, RecoveryStats
from ergon_actors.chaos.verify import (NEVER_RAN, NOT_FINISHED, PHANTOM_EPOCH, RAN_AGAIN, STEP_DIFFERS,
                                       STEP_LOST, WRONG_RESULT, FlowSummary, StepSummary, recovery_samples,
                                       verify)


def flow(steps: int = 3, *, epoch: int = 1, status: str = "COMPLETE", result: object = "done",
         missing: tuple[int, ...] = (), values: dict[int, object] | None = None) -> FlowSummary:
    values = values or {}
    return FlowSummary(status, result if status == "COMPLETE" else None, None, epoch,
                       {p: StepSummary(f"s{p}", "COMPLETE", values.get(p, p))
                        for p in range(steps) if p not in missing})


def starts(*runs: tuple[int, int], flow_id: str = "f", pid: int = 1) -> list[LedgerEntry]:
    """(position, epoch) pairs in the order the steps started."""
    return [LedgerEntry(flow_id, pos, f"s{pos}", epoch, 1, pid, float(i)) for i, (pos, epoch) in enumerate(runs)]


def kinds(verdict) -> set[tuple[str, str | None, int | None]]:
    return {(v.kind, v.flow_id, v.position) for v in verdict.violations}


def test_a_step_cut_by_a_fault_and_run_again_is_sound():
    verdict = verify({"f": flow()}, {"f": flow(epoch=2)}, starts((0, 1), (1, 1), (1, 2), (2, 2)))
    assert verdict.violations == ()
    assert (verdict.step_runs, verdict.steps_journaled, verdict.re_executed) == (4, 3, 1)


def test_a_fenced_zombie_going_on_after_an_earlier_ack_is_sound():
    # epoch 1 was paused after step 1's result was acknowledged; epoch 2 took over at step 2;
    # epoch 1 woke up, started step 2 (its write will be refused) and stopped
    verdict = verify({"f": flow(4)}, {"f": flow(4, epoch=2)},
                     starts((0, 1), (1, 1), (2, 2), (3, 2), (2, 1)))
    assert verdict.violations == ()
    assert verdict.stale_runs == 1


def test_a_step_run_again_after_an_acknowledged_result_is_reported_with_its_position():
    verdict = verify({"f": flow()}, {"f": flow(epoch=2)}, starts((0, 1), (1, 1), (2, 1), (1, 2)))
    assert kinds(verdict) == {(RAN_AGAIN, "f", 1)}
    assert "epoch 1 went on to step 2" in verdict.violations[0].detail


def test_a_stale_write_that_landed_shows_as_two_epochs_past_the_same_step():
    # epoch 2 re-ran step 1 (not journaled when it claimed); then epoch 1's late write of step 1
    # was accepted and epoch 1 went on to step 2: impossible with fencing
    verdict = verify({"f": flow()}, {"f": flow(epoch=2)},
                     starts((0, 1), (1, 1), (1, 2), (2, 1), (2, 2)))
    assert (RAN_AGAIN, "f", 1) in kinds(verdict)


def test_a_step_started_twice_within_one_lease_is_reported():
    verdict = verify({"f": flow()}, {"f": flow()}, starts((0, 1), (1, 1), (1, 1), (2, 1)))
    assert kinds(verdict) == {(RAN_AGAIN, "f", 1)}


def test_an_acknowledged_step_missing_from_the_journal_is_lost():
    verdict = verify({"f": flow()}, {"f": flow(missing=(1,))}, starts((0, 1), (1, 1), (2, 1)))
    assert kinds(verdict) == {(STEP_LOST, "f", 1)}
    assert "although it ran" in verdict.violations[0].detail


def test_a_journaled_step_that_never_started_is_reported():
    others = starts((0, 1), (1, 1), (2, 1), flow_id="g")  # step s1 does call ledger.record()
    verdict = verify({"f": flow(), "g": flow()}, {"f": flow(), "g": flow()}, starts((0, 1), (2, 1)) + others)
    assert kinds(verdict) == {(NEVER_RAN, "f", 1)}


def test_steps_without_ledger_calls_are_listed_not_reported():
    verdict = verify({"f": flow()}, {"f": flow()}, [])
    assert verdict.violations == ()
    assert verdict.unrecorded_steps == ("s0", "s1", "s2")


def test_a_run_under_an_epoch_the_journal_never_granted_is_reported():
    verdict = verify({"f": flow()}, {"f": flow(epoch=1)}, starts((0, 1), (1, 1), (2, 2)))
    assert (PHANTOM_EPOCH, "f", 2) in kinds(verdict)


def test_outcomes_are_compared_with_the_fault_free_run():
    expected = {"a": flow(), "b": flow(), "c": flow(), "d": flow()}
    observed = {"a": flow(status="RUNNING"), "b": flow(result="other"), "c": flow(values={2: "x"}), "d": None}
    verdict = verify(expected, observed, [])
    assert kinds(verdict) == {(NOT_FINISHED, "a", None), (WRONG_RESULT, "b", None), (STEP_DIFFERS, "c", 2),
                              (NOT_FINISHED, "d", None)}


def test_recovery_is_measured_to_the_next_start_not_by_the_victim():
    entries = [LedgerEntry("f", 1, "s1", 1, 1, 7, 10.5), LedgerEntry("f", 1, "s1", 2, 1, 8, 11.0),
               LedgerEntry("g", 0, "s0", 1, 1, 8, 10.2)]
    assert sorted(recovery_samples([(10.0, frozenset({"f", "g"}), 7)], entries)) == [10.2 - 10.0, 1.0]
    stats = RecoveryStats.of([float(i) for i in range(1, 101)])
    assert (stats.samples, stats.p50, stats.p99, stats.max) == (100, 50.0, 99.0, 100.0)
    assert RecoveryStats.of([]).p50 is None


def test_report_lists_violations_and_serializes():
    verdict = verify({"f": flow()}, {"f": flow(missing=(1,))}, starts((0, 1), (1, 1), (2, 1)))
    report = ChaosReport("m", "sqlite", 1, 2, 5.0, 6.0, 1, {"COMPLETE": 1}, (), 3, 2, 0, 0, 0,
                         RecoveryStats.of([]), 1, verdict.violations)
    assert not report.ok
    assert "step-lost: flow f step 1:" in report.format()
    assert report.to_dict()["violations"][0]["position"] == 1
