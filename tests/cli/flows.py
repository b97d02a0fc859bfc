"""Flows for the command-line tests. Steps append "flow_id step pid" to the ledger file named by
OPS_TEST_LEDGER, so a test knows what ran, how often, and in which worker process; files in
OPS_TEST_DIR steer them (a step waits for a file, or fails until one exists)."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from uuid import UUID

from ergon_actors import RetryPolicy, flow, flow_type, step
from ergon_actors.executor import await_external_signal, sleep
from ergon_actors.executor.context import current


def record(name: str) -> int:
    """Append this step's run to the ledger; returns how often it ran for this flow before."""
    ctx = current()
    flow_id = ctx.flow_id if ctx is not None else "?"
    ledger = Path(os.environ["OPS_TEST_LEDGER"])
    before = ledger.read_text().splitlines() if ledger.exists() else []
    with ledger.open("a") as out:
        out.write(f"{flow_id} {name} {os.getpid()}\n")
    return sum(1 for line in before if line.split()[:2] == [flow_id, name])


def marker(name: str) -> Path:
    return Path(os.environ["OPS_TEST_DIR"]) / name


async def wait_for(name: str, deadline: float = 60.0) -> None:
    """Wait until the test creates the file `name` (a bounded wait: a forgotten file fails)."""
    until = time.monotonic() + deadline
    while not marker(name).exists():
        if time.monotonic() > until:
            raise TimeoutError(f"marker {name} never appeared")
        await asyncio.sleep(0.05)


@dataclass
@flow_type
class Ledgered:
    """Three steps; the second crashes its worker on its first run, then fails until the file
    `fixed` exists."""

    key: str

    @step
    async def first(self) -> str:
        record("first")
        return f"first-{self.key}"

    @step
    async def second(self, before: str) -> str:
        if record("second") == 0:
            os._exit(1)  # the worker dies mid-step
        if not marker("fixed").exists():
            raise ValueError(f"second step of {self.key} is broken")
        return f"{before}+second"

    @step
    async def third(self, before: str) -> str:
        record("third")
        return f"{before}+third"

    @flow
    async def run(self) -> str:
        return await self.third(await self.second(await self.first()))


@dataclass
@flow_type
class Story:
    """A flow that is retried, timed, signalled, crashed and fenced, for its history."""

    key: str

    @step(retry_policy=RetryPolicy(max_attempts=3, initial_delay=0.2))
    async def flaky(self) -> str:
        if record("flaky") == 0:
            raise ConnectionError("the first try fails")
        return "flaky-ok"

    @step
    async def crash(self) -> str:
        if record("crash") == 0:
            await wait_for(f"never-{self.key}")  # the test SIGKILLs this worker meanwhile
        return "crash-ok"

    @step
    async def zombie(self) -> str:
        if record("zombie") == 0:
            await wait_for(f"wake-{self.key}")  # the test SIGSTOPs this worker, another takes over
        return "zombie-ok"

    @flow
    async def run(self) -> str:
        results = [await self.flaky()]
        await sleep("1s", "nap")
        results.append(await await_external_signal(f"go-{self.key}"))
        results.append(await self.crash())
        results.append(await self.zombie())
        results.append(await await_external_signal(f"finish-{self.key}"))
        return " ".join(str(r) for r in results)


@dataclass
@flow_type
class Slow:
    """Takes `seconds` in one step: long enough for progress lines."""

    seconds: float

    @step
    async def work(self) -> float:
        await asyncio.sleep(self.seconds)
        return self.seconds

    @flow
    async def run(self) -> float:
        return await self.work()


class Colour(Enum):
    RED = "red"


@dataclass
class Point:
    x: int
    y: int


@dataclass
@flow_type
class Values:
    """Returns values JSON has no type for, to show they travel losslessly."""

    when: datetime
    amount: Decimal
    tags: frozenset[str]
    point: Point
    colour: Colour

    @step
    async def everything(self) -> dict:
        return {"bytes": b"\x00\xff", "set": {3, 1, 2}, "when": self.when, "amount": self.amount,
                "id": UUID(int=1), "tuple": (1, "a"), "point": self.point, "colour": self.colour}

    @flow
    async def run(self) -> dict:
        return await self.everything()


@dataclass
@flow_type
class Waiter:
    """Waits for the signal `name`, then returns its payload."""

    name: str

    @flow
    async def run(self) -> object:
        return await await_external_signal(self.name)
