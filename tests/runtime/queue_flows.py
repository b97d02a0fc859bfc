"""Flows on named queues for tests/runtime/test_queues.py; each step notes its start and end
(with its pid) in the ledger file."""

import asyncio
from dataclasses import dataclass

from ergon_actors import Queue, flow, flow_type, step
from tests.helpers import note

LIMITED = Queue("limited", concurrency=3)
PER_KEY = Queue("per-key", key="customer", key_concurrency=1)
RATED = Queue("rated", rate_limit=10, rate_period=1.0)
ORDERED = Queue("ordered", concurrency=1)


async def work(ledger: str, key: str, position: int, seconds: float) -> str:
    note(ledger, key, position, "start")
    await asyncio.sleep(seconds)
    note(ledger, key, position, "end")
    return f"{key}-{position}"


@dataclass
@flow_type(queue=LIMITED)
class Limited:
    key: str
    ledger: str

    @step
    async def part(self, position: int) -> str:
        return await work(self.ledger, self.key, position, 0.3)

    @flow
    async def run(self) -> str:
        return await self.part(0) + await self.part(1)


@dataclass
@flow_type(queue=PER_KEY)
class PerKey:
    key: str
    ledger: str
    customer: str

    @step
    async def part(self) -> str:
        return await work(self.ledger, self.key, 0, 0.2)

    @flow
    async def run(self) -> str:
        return await self.part()


@dataclass
@flow_type(queue=RATED)
class Rated:
    key: str
    ledger: str

    @step
    async def part(self) -> str:
        return await work(self.ledger, self.key, 0, 0.0)

    @flow
    async def run(self) -> str:
        return await self.part()


@dataclass
@flow_type(queue=ORDERED)
class Ordered:
    key: str
    ledger: str

    @step
    async def part(self) -> str:
        return await work(self.ledger, self.key, 0, 0.02)

    @flow
    async def run(self) -> str:
        return await self.part()
