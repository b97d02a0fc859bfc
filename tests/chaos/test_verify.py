"""The chaos verifier on hand-made journals and ledgers: each rule fires when, and only when, it should."""

import pytest

from ergon_actors.chaos.ledger import LedgerEntry
from ergon_actors.executor.context import NESTED
from ergon_actors.chaos.report import ChaosReport, RecoveryStats
from ergon_actors.chaos.verify import (CHILD_DIFFERS, NEVER_RAN, NOT_FINISHED, PHANTOM_EPOCH, RAN_AGAIN,
                                       RETRY_COUNT, SIGNAL_DELIVERY, STEP_DIFFERS, STEP_LOST, WOKE_EARLY,
                                       WRONG_RESULT, FlowSummary, HistoryOrder, StepSummary, recovery_samples,
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
    samples = recovery_samples([("kill-worker", 10.0, frozenset({"f", "g"}), frozenset({7})),
                                ("kill-journal", 10.6, frozenset({"f"}), frozenset())], entries)
    assert sorted(samples["kill-worker"]) == [10.2 - 10.0, 1.0]
    assert samples["kill-journal"] == [11.0 - 10.6]
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


# -- every feature: crafted journals and ledgers -----------------------------------------------

def run_of(pos: int, epoch: int = 1, *, t: float = 0.0, pending: tuple[int, ...] = (), attempt: int = 1,
           try_number: int = 1, flow_id: str = "f", pid: int = 1) -> LedgerEntry:
    return LedgerEntry(flow_id, pos, f"s{pos}", epoch, attempt, pid, t, None, try_number, pending)


def record(name: str, value: object = None, *, status: str = "COMPLETE", attempt: int = 1, tries: int = 1,
           at: float = 0.0) -> StepSummary:
    return StepSummary(name, status, value, attempt, tries, at)


def journal(steps: dict[int, StepSummary], *, epoch: int = 1, status: str = "COMPLETE", result: object = "done",
            error: str | None = None, attempt: int = 1, finished: float = 100.0,
            parent: str | None = None) -> FlowSummary:
    return FlowSummary(status, result, error, epoch, steps, attempt, finished, parent)


def dag(epoch: int = 1) -> FlowSummary:
    """Positions 0 and 1 run in parallel (a DAG), 2 needs both, 3 comes after the DAG."""
    return journal({p: record(f"s{p}", p) for p in range(4)}, epoch=epoch)


def test_a_parallel_step_run_again_after_a_kill_is_sound():
    # epoch 1 started 0 and, beside it, 1; the worker died; epoch 2 ran both again (neither journaled)
    verdict = verify({"f": dag()}, {"f": dag(epoch=2)},
                     [run_of(0), run_of(1, pending=(0,)), run_of(0, 2), run_of(1, 2, pending=(0,)),
                      run_of(2, 2), run_of(3, 2)])
    assert verdict.violations == ()
    assert verdict.verified["parallel step"] == 2


def test_a_parallel_step_run_again_after_the_epoch_got_past_it_is_caught():
    # epoch 1 got past the whole DAG (it started step 3, nothing pending); epoch 2 ran step 0 again
    verdict = verify({"f": dag()}, {"f": dag(epoch=2)},
                     [run_of(0), run_of(1, pending=(0,)), run_of(2), run_of(3), run_of(0, 2)])
    assert kinds(verdict) == {(RAN_AGAIN, "f", 0)}
    assert "went on to step 2" in verdict.violations[0].detail


def test_a_parallel_sibling_that_started_first_is_not_evidence():
    # step 1 started before step 0 within one epoch, beside it: no order between DAG positions
    verdict = verify({"f": dag()}, {"f": dag()}, [run_of(1, pending=(0,)), run_of(0), run_of(2), run_of(3)])
    assert verdict.violations == ()


def test_the_event_history_catches_a_step_committed_before_the_claim_that_ran_it():
    # the ledger alone cannot tell (epoch 1 started only the two parallel steps), the history can
    starts_ = [run_of(0), run_of(1, pending=(0,)), run_of(0, 2), run_of(1, 2, pending=(0,))]
    events = [("scheduled", {}), ("claimed", {"epoch": 1}),
              ("step_completed", {"position": 0, "name": "s0", "attempt": 1, "tries": 1}),
              ("lease_expired", {"epoch": 1}), ("claimed", {"epoch": 2})]
    assert verify({"f": dag()}, {"f": dag(epoch=2)}, starts_).violations == ()
    assert verify({"f": dag()}, {"f": dag(epoch=2)}, starts_,
                  commits=HistoryOrder({"f": events[:2] + events[3:] + events[2:3]})).violations == ()
    verdict = verify({"f": dag()}, {"f": dag(epoch=2)}, starts_, commits=HistoryOrder({"f": events}))
    assert kinds(verdict) == {(RAN_AGAIN, "f", 0)}
    assert "event history" in verdict.violations[0].detail


def test_the_event_history_catches_a_failed_try_that_ran_again():
    events = [("claimed", {"epoch": 1}),
              ("step_failed", {"position": 0, "name": "s0", "attempt": 1, "tries": 1, "retry_at": 1.0}),
              ("claimed", {"epoch": 2})]
    verdict = verify({"f": flow(1)}, {"f": flow(1, epoch=2)}, [run_of(0), run_of(0, 2)],
                     commits=HistoryOrder({"f": events}))
    assert kinds(verdict) == {(RAN_AGAIN, "f", 0)}
    assert "the failure of its try 1" in verdict.violations[0].detail


def timed(deadline: float, *, finished: float = 100.0) -> FlowSummary:
    """Step 0, a timer at 1 due at `deadline`, step 2."""
    return journal({0: record("s0", 0), 1: record("timer:sleep", deadline), 2: record("s2", 2)}, epoch=2,
                   finished=finished)


def test_a_timer_is_compared_by_its_firing_not_its_deadline_value():
    verdict = verify({"f": timed(5.0)}, {"f": timed(50.0)}, [run_of(0, t=49.0), run_of(2, 2, t=50.2)])
    assert verdict.violations == ()
    assert verdict.verified["timer"] == 1


def test_a_timer_that_fired_early_is_caught():
    verdict = verify({"f": timed(5.0)}, {"f": timed(50.0)}, [run_of(0, t=49.0), run_of(2, 2, t=49.5)])
    assert kinds(verdict) == {(WOKE_EARLY, "f", 1)}
    assert "before its timer 'sleep' was due" in verdict.violations[0].detail


def test_a_flow_that_completed_before_its_timer_was_due_is_caught():
    verdict = verify({"f": timed(5.0)}, {"f": timed(50.0, finished=49.9)}, [run_of(0, t=49.0)])
    assert kinds(verdict) == {(WOKE_EARLY, "f", 1)}


def signalled(payload: object = "yes", *, at: float = 10.0) -> FlowSummary:
    return journal({0: record("s0", 0), 1: record("signal:go", payload, at=at), 2: record("s2", 2)}, epoch=2)


def test_a_signal_sent_while_the_flow_waited_is_sound():
    verdict = verify({"f": signalled()}, {"f": signalled()}, [run_of(0, t=1.0), run_of(2, 2, t=10.5)],
                     sent={"go": 10.0})
    assert verdict.violations == ()


def test_a_flow_that_went_on_before_its_signal_was_sent_is_caught():
    verdict = verify({"f": signalled()}, {"f": signalled()}, [run_of(0, t=1.0), run_of(2, 2, t=9.0)],
                     sent={"go": 10.0})
    assert kinds(verdict) == {(WOKE_EARLY, "f", 1)}


def test_a_signal_received_twice_or_never_sent_is_caught():
    twice = verify({"f": signalled(), "g": journal({})}, {"f": signalled(), "g": signalled()}, [],
                   sent={"go": 1.0})
    assert (SIGNAL_DELIVERY, None, None) in kinds(twice)
    assert "received 2 times" in next(v for v in twice.violations if v.kind == SIGNAL_DELIVERY).detail
    unsent = verify({"f": signalled()}, {"f": signalled()}, [], sent={})
    assert kinds(unsent) == {(SIGNAL_DELIVERY, "f", 1)}


def test_a_signal_wait_that_timed_out_before_its_deadline_is_caught():
    def waited(deadline: float) -> FlowSummary:
        return journal({0: record("deadline:go", deadline), 1: record("signal:go", "SignalTimeoutError: late",
                                                                       status="FAILED"), 2: record("s2", 2)},
                       epoch=2)
    assert verify({"f": waited(1.0)}, {"f": waited(20.0)}, [run_of(2, 2, t=20.1)]).violations == ()
    verdict = verify({"f": waited(1.0)}, {"f": waited(20.0)}, [run_of(2, 2, t=19.0)])
    assert kinds(verdict) == {(WOKE_EARLY, "f", 1)}
    assert verdict.verified["signal timeout"] == 1


def family(value: object = "paid", *, child_result: object = "paid", child_status: str = "COMPLETE",
           recorded_at: float = 20.0, ended_at: float = 10.0, parent: str = "p") -> dict[str, FlowSummary]:
    error = None if child_status == "COMPLETE" else "CardDeclined: no"
    return {"p": journal({0: record("child:Payment", value, at=recorded_at), 1: record("s1", 1)}, epoch=2),
            "p/0": journal({0: record("s0", 0)}, result=child_result if error is None else None,
                           status=child_status, error=error, finished=ended_at, parent=parent)}


def test_a_child_whose_result_reached_its_parent_once_is_sound():
    verdict = verify(family(), family(), [run_of(1, 2, t=21.0, flow_id="p"), run_of(0, flow_id="p/0")])
    assert verdict.violations == ()
    assert verdict.verified["child"] == 1


@pytest.mark.parametrize("observed, detail", [
    (family(value="other"), "ended COMPLETE 'paid'"),
    (family(child_status="FAILED"), "ended FAILED"),
    (family(recorded_at=5.0), "before child flow 'p/0' ended"),
    (family(parent="q"), "names 'q' as its parent"),
])
def test_a_parent_record_that_does_not_match_its_child_is_caught(observed, detail):
    verdict = verify(family(), observed, [])
    caught = [v for v in verdict.violations if v.kind == CHILD_DIFFERS]
    assert [(v.flow_id, v.position) for v in caught] == [("p", 0)], verdict.violations
    assert detail in caught[0].detail


def test_a_parent_that_went_on_before_its_child_ended_is_caught():
    verdict = verify(family(), family(), [run_of(1, 2, t=9.0, flow_id="p")])
    assert kinds(verdict) == {(WOKE_EARLY, "p", 0)}


def test_a_child_the_fault_free_run_does_not_have_is_caught():
    observed = {**family(), "p/9": journal({}, parent="p")}
    assert (CHILD_DIFFERS, "p/9", None) in kinds(verify(family(), observed, []))


def retried(tries: int = 3, *, epoch: int = 1) -> FlowSummary:
    """Step 0 succeeded on try `tries` (one epoch per try)."""
    return journal({0: record("s0", "picked", tries=tries)}, epoch=epoch)


def test_a_step_retried_as_its_policy_says_is_sound():
    # try 2 was cut by a fault and ran again in epoch 3
    ledger_ = [run_of(0), run_of(0, 2, try_number=2), run_of(0, 3, try_number=2), run_of(0, 4, try_number=3)]
    verdict = verify({"f": retried()}, {"f": retried(epoch=4)}, ledger_)
    assert verdict.violations == ()
    assert verdict.verified["retried step"] == 1


def test_a_try_beyond_the_policy_is_caught():
    ledger_ = [run_of(0), run_of(0, 2, try_number=2), run_of(0, 3, try_number=3), run_of(0, 4, try_number=4)]
    verdict = verify({"f": retried()}, {"f": retried(4, epoch=4)}, ledger_)
    assert kinds(verdict) == {(RETRY_COUNT, "f", 0)}


def test_a_failed_try_that_ran_again_is_caught():
    ledger_ = [run_of(0), run_of(0, 2, try_number=2), run_of(0, 3, try_number=1), run_of(0, 4, try_number=3)]
    verdict = verify({"f": retried()}, {"f": retried(epoch=4)}, ledger_)
    assert kinds(verdict) == {(RAN_AGAIN, "f", 0)}
    assert "a failed try ran again" in verdict.violations[0].detail


def test_a_try_the_ledger_never_saw_is_caught():
    ledger_ = [run_of(0), run_of(0, 3, try_number=3)]  # try 2 never started
    verdict = verify({"f": retried()}, {"f": retried(epoch=3)}, ledger_)
    assert kinds(verdict) == {(NEVER_RAN, "f", 0)}
    assert "tries 2" in verdict.violations[0].detail


def test_flow_attempts_are_compared_and_a_completed_step_never_runs_in_a_later_attempt():
    expected = journal({0: record("s0", 0), 1: record("s1", 1, attempt=2)}, attempt=2)
    sound = [run_of(0), run_of(1), run_of(1, 2, attempt=2)]
    assert verify({"f": expected}, {"f": journal(dict(expected.steps), epoch=2, attempt=2)}, sound).violations == ()
    again = verify({"f": expected}, {"f": journal(dict(expected.steps), epoch=2, attempt=2)},
                   [*sound, run_of(0, 2, attempt=2)])
    assert kinds(again) == {(RAN_AGAIN, "f", 0)}
    third = journal({0: record("s0", 0), 1: record("s1", 1, attempt=3)}, epoch=3, attempt=3)
    extra = verify({"f": expected}, {"f": third}, [*sound, run_of(1, 3, attempt=3)])
    assert kinds(extra) == {(RETRY_COUNT, "f", None), (RETRY_COUNT, "f", 1)}


def test_failed_and_cancelled_flows_end_as_in_the_fault_free_run():
    failed = journal({0: record("s0", "StepTimeoutError: late", status="FAILED")}, status="FAILED",
                     result=None, error="StepTimeoutError: late")
    cancelled = journal({0: record("s0", 0)}, status="CANCELLED", result=None, error="FlowCancelledError: x")
    sound = verify({"a": failed, "b": cancelled}, {"a": failed, "b": cancelled}, [])
    assert sound.violations == ()
    counted = sound.verified
    assert (counted["failed flow"], counted["cancelled flow"], counted["step timeout"]) == (1, 1, 1)
    other = journal(dict(failed.steps), status="FAILED", result=None, error="ValueError: other")
    verdict = verify({"a": failed, "b": cancelled}, {"a": other, "b": failed}, [])
    assert kinds(verdict) == {(WRONG_RESULT, "a", None), (NOT_FINISHED, "b", None), (STEP_DIFFERS, "b", 0)}


def test_a_wait_nested_in_a_step_is_got_past_with_its_step():
    # step 1's body sleeps: its timer takes position "1.0", nested under step 1
    timer = 2 * NESTED

    def nested(deadline: float) -> FlowSummary:
        return journal({0: record("s0", 0), 1: record("s1", 1), timer: record("timer:sleep", deadline),
                        2: record("s2", 2)}, epoch=2)
    ledger_ = [run_of(0, t=1.0), run_of(1, t=2.0), run_of(1, 2, t=50.0)]
    assert verify({"f": nested(5.0)}, {"f": nested(50.0)}, [*ledger_, run_of(2, 2, t=50.5)]).violations == ()
    verdict = verify({"f": nested(5.0)}, {"f": nested(50.0)}, [*ledger_, run_of(2, 2, t=49.0)])
    assert kinds(verdict) == {(WOKE_EARLY, "f", timer)}
    assert "step 1.0:" in str(verdict.violations[0])


def test_a_child_invoked_inside_a_step_is_found_by_its_nested_label():
    at = 2 * NESTED  # the first call nested in step 1
    parent = journal({0: record("s0", 0), 1: record("s1", 1), at: record("child:Payment", "paid", at=20.0)},
                     epoch=2)
    flows = {"p": parent, "p/1.0": journal({0: record("s0", 0)}, result="paid", finished=10.0, parent="p")}
    assert verify(flows, flows, []).violations == ()
    lost = verify(flows, {"p": parent, "p/1.0": None}, [])
    assert (CHILD_DIFFERS, "p", at) in kinds(lost)
