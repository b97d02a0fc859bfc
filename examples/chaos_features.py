"""Every feature under chaos: parallel steps, a timer, signals, a child flow, retries, timeouts,
a flow that fails on purpose and one that is cancelled.

    python -m ergon_actors chaos examples.chaos_features --flows 50 --seed 1

`chaos_flows` builds three shapes of flow; `chaos_signals` and `chaos_cancels` tell the harness
what to do to them from outside. Every step records its run in the side-effect ledger first
(`ledger.record()`, a no-op outside a chaos run), then takes a little time, so that faults land
in the middle of steps. Results depend only on the flows' fields (a step that fails on purpose
fails by its try or attempt number), so a run under faults must end exactly as a fault-free run.
"""

import asyncio
import random
from dataclasses import dataclass

from ergon_actors import (DeferredRegistry, RetryableError, RetryPolicy, SignalTimeoutError,
                          await_external_signal, flow, flow_type, sleep, step)
from ergon_actors.executor import current, current_step
from ergon_actors.testing import ledger


class ShelfEmpty(RetryableError):
    """A pick that finds the shelf empty; the step's retry policy tries again."""


class CardDeclined(RetryableError):
    """A capture the bank declines; the payment flow's retry policy runs it again."""


@dataclass
@flow_type
class Payment:
    """The child flow: declined on its first attempt when the amount is odd, paid on the next."""

    order_id: str
    cents: int
    latency: float

    @step
    async def authorize(self) -> str:
        ledger.record()
        await asyncio.sleep(self.latency)
        return f"A-{self.order_id}"

    @step
    async def capture(self, authorization: str) -> str:
        ledger.record()
        await asyncio.sleep(self.latency)
        run = current()
        if run is not None and run.attempt == 1 and self.cents % 2:
            raise CardDeclined(f"{self.order_id}: card declined")
        return f"P-{authorization}-{self.cents}"

    @flow(retry_policy=RetryPolicy(max_attempts=2, initial_delay=0.1))
    async def run(self) -> str:
        return await self.capture(await self.authorize())


@dataclass
@flow_type
class Fulfilment:
    """A DAG of three steps, a retried step, a timer, a signal that times out, a signal that comes,
    a child flow and a last step."""

    order_id: str
    items: int
    unit_cents: int
    flaky: int        # tries of `pick` that fail before one succeeds
    latency: float    # seconds each step takes

    @step
    async def customer(self) -> str:
        ledger.record()
        await asyncio.sleep(self.latency)
        return f"C-{self.order_id}"

    @step
    async def stock(self) -> int:
        ledger.record()
        await asyncio.sleep(self.latency)
        return self.items + 10

    @step
    async def quote(self, customer: str, stock: int) -> int:
        ledger.record()
        await asyncio.sleep(self.latency)
        return self.items * self.unit_cents if stock >= self.items else 0

    @step(retry_policy=RetryPolicy(max_attempts=4, initial_delay=0.05))
    async def pick(self) -> list[str]:
        ledger.record()
        await asyncio.sleep(self.latency)
        call = current_step()
        if call is not None and call.try_number <= self.flaky:
            raise ShelfEmpty(f"{self.order_id}: shelf empty on try {call.try_number}")
        return [f"{self.order_id}/item-{i}" for i in range(self.items)]

    @step
    async def ship(self, items: list[str], payment: str, approver: str, express: bool) -> str:
        ledger.record()
        await asyncio.sleep(self.latency)
        return f"T-{self.order_id}-{len(items)}-{approver}-{'express' if express else 'standard'}"

    @flow
    async def run(self) -> dict:
        dag = DeferredRegistry()
        dag.register("customer", [], lambda _: self.customer())
        dag.register("stock", [], lambda _: self.stock())
        quote = dag.register("quote", ["customer", "stock"], lambda got: self.quote(got["customer"], got["stock"]))
        await dag.execute()                      # customer and stock run in parallel, then quote
        cents = await quote.resolve()
        items = await self.pick()
        await sleep("300ms")                     # a cooling-off period
        try:
            express = await await_external_signal(f"express-{self.order_id}", timeout="200ms")
        except SignalTimeoutError:               # nobody sends it: the wait times out
            express = False
        approval = await await_external_signal(f"approve-{self.order_id}")
        payment = await self.invoke(Payment(self.order_id, cents, self.latency)).result()
        tracking = await self.ship(items, payment, approval["by"], express)
        return {"order": self.order_id, "cents": cents, "payment": payment, "tracking": tracking}


@dataclass
@flow_type
class Audit:
    """Designed to fail: its check outlives the step's timeout on both attempts the policy gives."""

    order_id: str
    latency: float

    @step
    async def collect(self) -> int:
        ledger.record()
        await asyncio.sleep(self.latency)
        return len(self.order_id)

    @step(timeout=0.2)
    async def check(self, records: int) -> str:
        ledger.record()
        await asyncio.sleep(60)                  # a dependency that never answers
        return f"checked {records}"

    @flow(retry_policy=RetryPolicy(max_attempts=2, initial_delay=0.1))
    async def run(self) -> str:
        return await self.check(await self.collect())


@dataclass
@flow_type
class Backorder:
    """Designed to be cancelled: it waits for a restock signal that nobody sends."""

    order_id: str
    latency: float

    @step
    async def hold(self) -> str:
        ledger.record()
        await asyncio.sleep(self.latency)
        return f"H-{self.order_id}"

    @flow
    async def run(self) -> str:
        held = await self.hold()
        restocked = await await_external_signal(f"restock-{self.order_id}")
        return f"{held}-{restocked}"


def chaos_flows(n: int, seed: int) -> list[object]:
    """n flows, the same for the same seed: three fulfilments to each audit and backorder."""
    rng = random.Random(seed)
    flows: list[object] = []
    for i in range(n):
        latency = round(rng.uniform(0.05, 0.25), 3)
        if i % 5 == 3:
            flows.append(Audit(f"audit-{i}", latency))
        elif i % 5 == 4:
            flows.append(Backorder(f"backorder-{i}", latency))
        else:
            flows.append(Fulfilment(f"order-{i}", items=rng.randint(1, 3), unit_cents=rng.randint(100, 9_999),
                                    flaky=rng.randint(0, 2), latency=latency))
    return flows


def chaos_signals(flows: list[object]) -> dict[str, object]:
    """The signals the harness sends: every fulfilment's approval (express and restock never come)."""
    return {f"approve-{f.order_id}": {"by": f"manager-{i % 3}"}
            for i, f in enumerate(flows) if isinstance(f, Fulfilment)}


def chaos_cancels(flows: list[object]) -> list[object]:
    """The flows the harness cancels once they wait for a signal: every backorder."""
    return [f for f in flows if isinstance(f, Backorder)]
