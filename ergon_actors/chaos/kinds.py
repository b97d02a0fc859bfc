"""The kinds of violation a chaos run reports (docs/chaos.md explains each), and how rules report one."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Reporter", "KINDS", "NOT_FINISHED", "WRONG_RESULT", "STEP_LOST", "STEP_DIFFERS", "STEP_UNEXPECTED",
           "NEVER_RAN", "RAN_AGAIN", "PHANTOM_EPOCH", "RETRY_COUNT", "WOKE_EARLY", "SIGNAL_DELIVERY",
           "CHILD_DIFFERS", "ORPHAN", "NOT_QUARANTINED", "BLAMED"]

NOT_FINISHED = "not-finished"        # the flow did not end as in the fault-free run
WRONG_RESULT = "wrong-result"        # it ended so, with another result or error
STEP_LOST = "step-lost"              # a step ran / is due but has no journaled result
STEP_DIFFERS = "step-differs"        # a journaled record differs from the fault-free run's
STEP_UNEXPECTED = "step-unexpected"  # a journaled record the fault-free run does not have
NEVER_RAN = "never-ran"              # a journaled step (or one of its tries) the ledger never saw start
RAN_AGAIN = "ran-again"              # a step started after its result had been committed
PHANTOM_EPOCH = "phantom-epoch"      # a step ran under a lease epoch the journal never granted
RETRY_COUNT = "retry-count"          # more or fewer tries or attempts than the retry policy gives
WOKE_EARLY = "woke-early"            # the flow went on past a timer, signal or child before it was due
SIGNAL_DELIVERY = "signal-delivery"  # a signal delivered more or less than once, or never sent
CHILD_DIFFERS = "child-differs"      # a parent's child record does not match the child flow
ORPHAN = "orphan"                    # a process outlived its supervisor
NOT_QUARANTINED = "not-quarantined"  # a declared poison flow did not end quarantined
BLAMED = "blamed"                    # a flow not declared poison was blamed for a worker's death

KINDS = (NOT_FINISHED, WRONG_RESULT, STEP_LOST, STEP_DIFFERS, STEP_UNEXPECTED, NEVER_RAN, RAN_AGAIN,
         PHANTOM_EPOCH, RETRY_COUNT, WOKE_EARLY, SIGNAL_DELIVERY, CHILD_DIFFERS, ORPHAN, NOT_QUARANTINED, BLAMED)

Reporter = Callable[[str, str | None, int | None, str], None]
"""report(kind, flow_id, position, detail): how a rule reports a violation (the first per key is kept)."""
