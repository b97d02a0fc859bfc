"""Chaos testing: run flows under a real supervisor while faults hit it, then verify the journal.

The public entry points are re-exported by `ergon_actors.testing`; see docs/chaos.md.
"""

from __future__ import annotations

from .faults import FAULTS
from .ledger import LEDGER_ENV, Ledger, LedgerEntry, ledger, read_ledger
from .procs import ChaosError
from .report import ChaosProgress, ChaosReport, FaultRecord, ProgressPrinter, RecoveryStats, Violation
from .run import chaos_run, default_duration, load_flows

__all__ = ["chaos_run", "load_flows", "default_duration", "ledger", "Ledger", "LedgerEntry", "read_ledger",
           "LEDGER_ENV", "FAULTS", "ChaosError", "ChaosReport", "ChaosProgress", "FaultRecord",
           "RecoveryStats", "Violation", "ProgressPrinter"]
