"""Poison under chaos: orders, and two flows whose step kills the worker that runs it.

    python -m ergon_actors chaos examples.chaos_poison --flows 60 --seed 1

`chaos_flows` builds the orders of examples/chaos_orders.py and, among them, two poison flows:
one whose step calls `os._exit(1)`, one whose step segfaults. `chaos_poison` declares them, so
the fault-free run leaves them out and the verifier checks that each ends quarantined (FAILED
with PoisonFlowError) while no other flow is blamed for a crash, the harness's own kills
included.
"""

import ctypes
import os
from dataclasses import dataclass

from ergon_actors import flow, flow_type, step
from ergon_actors.testing import ledger
from examples.chaos_orders import chaos_flows as orders


@dataclass
@flow_type
class Poison:
    name: str
    kind: str  # "exit": os._exit(1); "segv": a segmentation fault

    @step
    async def prepare(self) -> str:
        ledger.record()
        return f"prepared {self.name}"

    @step
    async def explode(self, prepared: str) -> str:
        ledger.record()
        if self.kind == "exit":
            os._exit(1)
        ctypes.string_at(0)  # reads address 0: SIGSEGV
        return prepared

    @flow
    async def run(self) -> str:
        return await self.explode(await self.prepare())


def chaos_flows(n: int, seed: int) -> list[object]:
    """n flows, the same for the same seed: n - 2 orders, with the two poison flows among them."""
    flows: list[object] = list(orders(max(n - 2, 1), seed))
    flows.insert(len(flows) // 3, Poison("poison-exit", "exit"))
    flows.insert(2 * len(flows) // 3, Poison("poison-segv", "segv"))
    return flows


def chaos_poison(flows: list[object]) -> list[object]:
    """The flows whose step kills its worker: each must end quarantined."""
    return [f for f in flows if isinstance(f, Poison)]
