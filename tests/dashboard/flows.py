"""Flows for the dashboard's tests, one for each state a page shows (a flow waiting for a signal
is tests.cli.flows.Waiter). Files in DASH_TEST_DIR steer them: a step waits for a file, or fails
until one exists."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ergon_actors import flow, flow_type, step
from ergon_actors.executor import sleep


def marker(name: str) -> Path:
    return Path(os.environ["DASH_TEST_DIR"]) / name


@dataclass
@flow_type
class Shipment:
    """Two steps around a short timer and a child flow; its result holds markup."""

    key: str

    @step
    async def pack(self) -> str:
        return f"<script>alert('{self.key}')</script>"

    @step
    async def ship(self, packed: str) -> str:
        return f"{packed} shipped"

    @flow
    async def run(self) -> str:
        packed = await self.pack()
        await sleep(0.2, "settle")
        label = await self.invoke(Label(self.key)).result()
        return f"{await self.ship(packed)} with {label}"


@dataclass
@flow_type
class Label:
    """A child flow of Shipment."""

    key: str

    @step
    async def print_label(self) -> str:
        return f"label-{self.key}"

    @flow
    async def run(self) -> str:
        return await self.print_label()


@dataclass
@flow_type
class Broken:
    """Fails until the file `fixed-KEY` exists."""

    key: str

    @step
    async def work(self) -> str:
        if not marker(f"fixed-{self.key}").exists():
            raise ValueError(f"{self.key} is broken")
        return "repaired"

    @flow
    async def run(self) -> str:
        return await self.work()


@dataclass
@flow_type
class Crasher:
    """Kills its worker in its only step: quarantined as poison."""

    key: str

    @step
    async def explode(self) -> str:
        os._exit(3)

    @flow
    async def run(self) -> str:
        return await self.explode()


@dataclass
@flow_type
class Holder:
    """Runs one step until the file `release-KEY` exists (bounded: a forgotten file fails it)."""

    key: str

    @step
    async def hold(self) -> str:
        until = time.monotonic() + 120
        while not marker(f"release-{self.key}").exists():
            if time.monotonic() > until:
                raise TimeoutError("never released")
            await asyncio.sleep(0.05)
        return "released"

    @flow
    async def run(self) -> str:
        return await self.hold()
