"""The poison rules a chaos run checks: every declared poison flow ends quarantined, and no other
flow is blamed for a worker's death (the harness's own kills are released, never recorded)."""

from __future__ import annotations

from collections.abc import Iterable

from ..core import FlowRecord
from ..storage.crashes import how
from .kinds import BLAMED, NOT_QUARANTINED, Reporter

__all__ = ["check_blame"]


def check_blame(flows: Iterable[FlowRecord], poison: Iterable[str], report: Reporter) -> int:
    """Report a declared poison flow (by flow_id) that is missing or not quarantined, and any
    other flow among `flows` with a blamed crash; returns how many poison flows were quarantined."""
    wanted = set(poison)
    quarantined = 0
    for flow in flows:
        if flow.flow_id in wanted:
            wanted.discard(flow.flow_id)
            if flow.quarantined:
                quarantined += 1
            else:
                report(NOT_QUARANTINED, flow.flow_id, None, f"a declared poison flow ended {flow.status} "
                       f"with {flow.blamed} blamed crashes of {len(flow.crashes)}; it must end quarantined")
        elif flow.blamed:
            last = [c for c in flow.crashes if c.alone][-1]
            report(BLAMED, flow.flow_id, last.position, f"a flow not declared poison was blamed for "
                   f"{flow.blamed} worker deaths, last {how(last)} ({last.cause}) of worker {last.worker_id}"
                   + (" and quarantined" if flow.quarantined else ""))
    for flow_id in sorted(wanted):
        report(NOT_QUARANTINED, flow_id, None, "a declared poison flow is not in the store")
    return quarantined
