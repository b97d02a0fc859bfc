"""Flows the runtime tests run in worker processes. Behaviour is chosen by the flow's `mode`.

    ""                   every step returns at once
    "sleep:S"            every step sleeps S seconds
    "hang-once:P"        step P hangs the first time it runs (until killed), returns the next time
    "late-once:P:S"      step P sleeps S seconds the first time it runs
    "exit:P"             step P kills its worker process (exit code 1) every time
    "segv:P"             step P segfaults its worker process (SIGSEGV) every time
    "grow:P"             step P grows its worker's memory by 8 MB every 50 ms, without end
    "block:P"            step P blocks its worker's event loop (time.sleep(600)) every time
    "stall:P:S"          step P blocks its worker's event loop for S seconds (time.sleep(S)) every time
    "hold:P:MB"          step P holds MB megabytes for 2 s, then returns
"""

import asyncio
import ctypes
import os
import time
from dataclasses import dataclass

from ergon_actors import RetryableError, RetryPolicy, await_external_signal, flow, flow_type, sleep, step
from tests.helpers import note, read_ledger


@dataclass
@flow_type
class LedgerFlow:
    key: str
    ledger: str
    mode: str = ""
    steps: int = 3

    @step
    async def work(self, position: int) -> str:
        note(self.ledger, self.key, position, "start")
        await self._behave(position)
        note(self.ledger, self.key, position, "end")
        return f"{self.key}-{position}"

    async def _behave(self, position: int) -> None:
        kind, _, rest = self.mode.partition(":")
        if kind == "sleep":
            await asyncio.sleep(float(rest))
        elif kind in ("hang-once", "late-once") and int(rest.split(":")[0]) == position:
            marker = f"{self.ledger}.{self.key}.{position}.ran"
            if not os.path.exists(marker):
                open(marker, "w").close()
                await asyncio.sleep(3600 if kind == "hang-once" else float(rest.split(":")[1]))
        elif kind == "exit" and int(rest) == position:
            os._exit(1)
        elif kind == "segv" and int(rest) == position:
            ctypes.string_at(0)
        elif kind == "grow" and int(rest) == position:
            hoard = []
            while True:
                hoard.append(b"x" * 8 * 2**20)  # written, so resident
                await asyncio.sleep(0.05)
        elif kind == "block" and int(rest) == position:
            time.sleep(600)
        elif kind == "stall" and int(rest.split(":")[0]) == position:
            time.sleep(float(rest.split(":")[1]))
        elif kind == "hold" and int(rest.split(":")[0]) == position:
            held = b"x" * int(rest.split(":")[1]) * 2**20  # written, so resident
            await asyncio.sleep(2.0)
            del held

    @flow
    async def run(self) -> str:
        results = []
        for position in range(self.steps):
            results.append(await self.work(position))
        return "|".join(results)


def expected(key: str, steps: int = 3) -> str:
    return "|".join(f"{key}-{i}" for i in range(steps))


@dataclass
@flow_type
class WaitingFlow:
    """Step 0, then a wait ("timer:S", "signal:NAME" or "child"), then step 2."""

    key: str
    ledger: str
    wait: str

    @step
    async def before(self) -> str:
        note(self.ledger, self.key, 0, "start")
        return "before"

    @step
    async def after(self, got: object) -> str:
        note(self.ledger, self.key, 2, "start")
        return f"after {got}"

    @flow
    async def run(self) -> str:
        await self.before()
        kind, _, arg = self.wait.partition(":")
        if kind == "timer":
            await sleep(float(arg))
            got = "timer"
        elif kind == "signal":
            got = await await_external_signal(arg)
        else:
            got = await self.invoke(LedgerFlow(f"{self.key}-child", self.ledger, "sleep:0.5")).result()
        return await self.after(got)


@dataclass
@flow_type
class RetryingFlow:
    """One step that fails `failures` times (counted in the ledger), retried 1 s apart."""

    key: str
    ledger: str
    failures: int

    @step(retry_policy=RetryPolicy(max_attempts=5, initial_delay=1.0, multiplier=1.0))
    async def call(self) -> str:
        tries = sum(1 for e in read_ledger(self.ledger) if e["key"] == self.key)
        note(self.ledger, self.key, 0, "start")
        if tries < self.failures:
            raise RetryableError(f"try {tries + 1} failed")
        return f"ok after {tries + 1}"

    @flow
    async def run(self) -> str:
        return await self.call()


@dataclass
@flow_type
class SizedFlow:
    """Returns `size` bytes, made by a step (`in_step`) or by the flow itself."""

    size: int
    in_step: bool = True

    @step
    async def make(self) -> bytes:
        return b"x" * self.size

    @flow
    async def run(self) -> bytes:
        return await self.make() if self.in_step else b"x" * self.size


@dataclass
@flow_type
class TimedWait(WaitingFlow):
    """A WaitingFlow with a 1.5 s timeout that waits ("signal:NAME", "signal-60s:NAME" or
    "child") for something that does not come in time."""

    @flow(timeout=1.5)
    async def run(self) -> object:
        await self.before()
        kind, _, arg = self.wait.partition(":")
        if kind == "signal":
            return await await_external_signal(arg)
        if kind == "signal-60s":
            return await await_external_signal(arg, timeout=60)
        return await self.invoke(WaitingFlow(f"{self.key}-child", self.ledger, f"signal:never-{self.key}")).result()
