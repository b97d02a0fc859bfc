"""The fault-free run a chaos run is compared with, and what the run under test journaled.

The reference runs the same flow instances, under the same flow_ids, on an in-process Worker
with an in-memory store (the code path of `Executor`), with the module's signals sent at its
start and its declared cancellations made once those flows wait for a signal. Child flows get
the same flow_ids too (derived from the parent's), so both runs are compared flow by flow. The
declared poison flows are left out: their steps would kill this process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

from ..core import FlowRecord, StepRecord
from ..errors import ErgonError
from ..executor import Scheduler, Worker
from ..storage import InMemoryExecutionLog
from ..storage.base import LogBase
from ..storage.commands import GetFlow, LoadHistory, LoadSteps
from ..storage.events import FlowEvent
from .ledger import mute, unmute
from .procs import ChaosError
from .stimuli import Stimuli, waits_for_signal
from .summary import FlowSummary

__all__ = ["reference_run", "observe", "histories"]

ALL = 1 << 30  # a limit no run reaches: read everything


async def reference_run(flows: list[object], ids: list[str], classes: list[type], stimuli: Stimuli,
                        timeout: float) -> dict[str, FlowSummary]:
    """The fault-free outcome of every flow but the poison ones, and of their child flows, by flow_id.

    Raises:
        ChaosError: the flows did not all end within `timeout` seconds, or the run failed.
    """
    token = mute()
    store = InMemoryExecutionLog()
    worker = Worker(store, "chaos-reference", concurrency=4 * len(flows) + 16, lease_seconds=3600.0)
    try:
        for cls in classes:
            await worker.register(cls)
        for name, payload in stimuli.signals.items():
            await store.send_signal(name, payload)
        healthy = [(flow, flow_id) for i, (flow, flow_id) in enumerate(zip(flows, ids, strict=True))
                   if i not in stimuli.poison]
        for flow, flow_id in healthy:
            await Scheduler(store).schedule(flow, flow_id)
        handle = await worker.start()
        try:
            async with asyncio.timeout(timeout):
                await _cancel_when_waiting(store, {ids[i] for i in stimuli.cancels})
                for _flow, flow_id in healthy:
                    await store.wait_for_completion(flow_id)
        except TimeoutError:
            raise ChaosError(f"the fault-free run of the flows did not finish within {timeout:g}s; "
                             "chaos flows must finish on their own, given the signals and cancellations "
                             "their module declares") from None
        finally:
            await handle.shutdown(0)
        records = await store.list_flows(limit=ALL)
        return {r.flow_id: FlowSummary.of(r, await store.load_steps(r.flow_id)) for r in records}
    except ErgonError as exc:
        if isinstance(exc, ChaosError):
            raise
        raise ChaosError(f"the fault-free run of the flows failed: {type(exc).__name__}: {exc}") from exc
    finally:
        unmute(token)


async def _cancel_when_waiting(store: LogBase, flow_ids: set[str]) -> None:
    while flow_ids:
        for flow_id in sorted(flow_ids):
            record = await store.get_flow(flow_id)
            if record is None or record.status in ("COMPLETE", "FAILED", "CANCELLED"):
                flow_ids.discard(flow_id)  # ended before it waited: compared as it ended
            elif waits_for_signal(record.status, record.waiting_on):
                await store.cancel_flow(flow_id)
                flow_ids.discard(flow_id)
        await asyncio.sleep(0.02)


async def observe(store: LogBase, expected: dict[str, FlowSummary]) -> dict[str, FlowSummary | None]:
    """The run under test's journal of every expected flow (None: missing), plus any other flow
    whose parent is one of them (a child the fault-free run does not have)."""
    ids = list(expected)
    results = await store.execute([c for i in ids for c in (GetFlow(i), LoadSteps(i))])
    observed: dict[str, FlowSummary | None] = {}
    for flow_id, flow, steps in zip(ids, results[::2], results[1::2], strict=True):
        # a flow's record (None if missing, an error if refused), then its steps
        observed[flow_id] = (FlowSummary.of(flow, cast("list[StepRecord]", steps))
                             if isinstance(flow, FlowRecord) else None)
    for flow in await store.list_flows(limit=ALL):
        if flow.flow_id not in expected and flow.parent_id in expected:
            observed[flow.flow_id] = FlowSummary.of(flow, await store.load_steps(flow.flow_id))
    return observed


async def histories(store: LogBase, flow_ids: Iterable[str]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Every flow's event history, oldest first, as (kind, details) pairs, read in one batch."""
    ids = list(flow_ids)
    results = await store.execute([LoadHistory(flow_id, 0, ALL) for flow_id in ids])
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for flow_id, events in zip(ids, results, strict=True):
        if isinstance(events, BaseException):
            raise events
        found[flow_id] = [(e.kind, e.details) for e in cast("list[FlowEvent]", events)]
    return found
