"""What the SQLite store alone costs per flow: this process's CPU per flow, by command kind.

Run from the repository root:

    python scripts/bench_store.py                      # 20,000 flows of 3 steps, batches of 200
    python scripts/bench_store.py --no-history         # the same without the history events

Drives SqliteExecutionLog(inline=True) directly, one phase per command kind in batches as the
journal commits them (schedule, claim 256 at a time, each step, finish), synchronous OFF so the
disk's flush is out of the way, and prints the CPU each phase cost per flow: the part of the
journal's CPU per flow that is SQLite and the store's Python (docs/performance.md). With
--no-history the store skips its event rows, to show what the history costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ergon_actors.core import StepRecord
from ergon_actors.storage.commands import AppendStep, ClaimFlows, Command, FinishFlow, ScheduleFlow
from ergon_actors.storage.sqlite import SqliteExecutionLog


def chunks(commands: list[Command], size: int) -> list[list[Command]]:
    return [commands[i:i + size] for i in range(0, len(commands), size)]


async def phase(log: SqliteExecutionLog, batches: Sequence[list[Command]], flows: int) -> tuple[float, list]:
    """CPU microseconds per flow the batches cost, and their results."""
    start = time.process_time()
    results = []
    for batch in batches:
        answers = await log.execute(batch)
        bad = [r for r in answers if isinstance(r, BaseException)]
        if bad:
            raise RuntimeError(f"{type(batch[0]).__name__}: {bad[0]!r}")
        results.append(answers)
    return (time.process_time() - start) * 1e6 / flows, results


async def measure(path: str, a: argparse.Namespace) -> dict[str, float]:
    log = await SqliteExecutionLog(path, synchronous="OFF", inline=True).connect()
    if a.no_history:
        log._event = lambda *args: None  # type: ignore[method-assign]
    ids = [f"f-{i}" for i in range(a.flows)]
    rows: dict[str, float] = {}
    try:
        rows["ScheduleFlow"], _ = await phase(log, chunks([ScheduleFlow(i, "Noop", b"\x93\x01\x02\x03") for i in ids],
                                                          a.batch), a.flows)
        claims: list[list[Command]] = [[ClaimFlows(f"w{n % 2}", f"req-{n}", 256, 30.0, flow_types=["Noop"])]
                                       for n in range((a.flows + 255) // 256)]
        rows["ClaimFlows"], claimed = await phase(log, claims, a.flows)
        epochs = {c.flow.flow_id: c.flow.epoch for answers in claimed for c in answers[0]}
        if len(epochs) != a.flows:
            raise RuntimeError(f"claimed {len(epochs)} of {a.flows} flows")
        for p in range(a.steps):
            steps: list[Command] = [AppendStep(i, epochs[i], StepRecord(p, f"step{p}", p, result=b"\xc0")) for i in ids]
            rows[f"AppendStep {p}"], _ = await phase(log, chunks(steps, a.batch), a.flows)
        rows["FinishFlow"], _ = await phase(log, chunks([FinishFlow(i, epochs[i], "COMPLETE", result=b"\xc0")
                                                         for i in ids], a.batch), a.flows)
    finally:
        await log.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description="SQLite store CPU per flow (see the module docstring)")
    parser.add_argument("--flows", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=200, help="commands per batch, as the journal groups them")
    parser.add_argument("--no-history", action="store_true", help="leave out the history events")
    a = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(measure(os.path.join(tmp, "store.db"), a))
    print(f"{a.flows} flows x {a.steps} steps, batches of {a.batch}, synchronous OFF"
          f"{', no history' if a.no_history else ''}; load average {load:.2f} -> {os.getloadavg()[0]:.2f}")
    for name, us in rows.items():
        print(f"{name:<16}{us:>8.1f} us CPU per flow")
    print(f"{'a flow in all':<16}{sum(rows.values()):>8.1f} us CPU per flow")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
