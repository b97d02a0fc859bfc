"""How the SQLite store's rows of flows and steps map to records (the columns, in order)."""

from __future__ import annotations

from typing import Any

from ..core import FlowRecord, StepRecord
from .records import load_crashes, load_failure

__all__ = ["FLOW_COLUMNS", "STEP_COLUMNS", "flow_row", "step_row"]

FLOW_COLUMNS = ("flow_id, flow_type, args, status, version, attempt, epoch, owner, lease_expires, "
                "ready_at, result, error, parent_id, created_at, updated_at, waiting_on, cancel_requested, "
                "crashes, suspect")
STEP_COLUMNS = "position, name, args_hash, status, result, error, attempt, completed_at, tries, retry_at"


def flow_row(row: tuple[Any, ...]) -> FlowRecord:
    """The FlowRecord of a row of FLOW_COLUMNS."""
    values = list(row)
    if values[11] is not None:
        values[11] = load_failure(values[11])
    values[16] = bool(values[16])
    values[17] = load_crashes(values[17])
    return FlowRecord(*values)


def step_row(row: tuple[Any, ...]) -> StepRecord:
    """The StepRecord of a row of STEP_COLUMNS."""
    values = list(row)
    if values[5] is not None:
        values[5] = load_failure(values[5])
    return StepRecord(*values)
