"""Helpers for testing your own flows: the chaos harness and the side-effect ledger.

    from ergon_actors.testing import chaos_run, ledger

    report = await chaos_run("myapp.flows", flows=50, workers=2, duration=20, seed=1)
    assert report.ok, report.format()

A step records its runs with `ledger.record()` as the first thing in its body (a no-op outside
a chaos run). See docs/chaos.md for what is verified and how.
"""

from __future__ import annotations

from .chaos import (FAULTS, ChaosError, ChaosProgress, ChaosReport, FaultRecord, Ledger, LedgerEntry,
                    RecoveryStats, Violation, chaos_run, ledger, read_ledger)
from .chaos.procs import RedisServer
from .chaos.kinds import (BLAMED, CHILD_DIFFERS, NEVER_RAN, NOT_FINISHED, NOT_QUARANTINED, ORPHAN, PHANTOM_EPOCH,
                          RAN_AGAIN, RETRY_COUNT, SIGNAL_DELIVERY, STEP_DIFFERS, STEP_LOST, STEP_UNEXPECTED,
                          WOKE_EARLY, WRONG_RESULT)

__all__ = ["chaos_run", "ledger", "RedisServer", "Ledger", "LedgerEntry", "read_ledger", "ChaosReport", "ChaosProgress",
           "FaultRecord", "RecoveryStats", "Violation", "ChaosError", "FAULTS",
           "NOT_FINISHED", "WRONG_RESULT", "STEP_LOST", "STEP_DIFFERS", "STEP_UNEXPECTED", "NEVER_RAN",
           "RAN_AGAIN", "PHANTOM_EPOCH", "RETRY_COUNT", "WOKE_EARLY", "SIGNAL_DELIVERY", "CHILD_DIFFERS",
           "ORPHAN", "NOT_QUARANTINED", "BLAMED"]
