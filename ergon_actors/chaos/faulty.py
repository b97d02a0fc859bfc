"""Deliberately broken stores, so that tests can prove the chaos verifier catches real bugs.

TEST ONLY. A fault plan names the broken modes, e.g. "journal:skip_fencing" or
"journal:ack_before_commit=15". Only the chaos harness installs one: its supervisor entry
(ergon_actors.chaos.supervise) passes `StoreWrapper(WRAPPER, plan)` to `Supervisor`, and the
journal wraps its store with `FaultyStore`. No setting and no environment variable of a
`run` can.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Sequence

from ..core import FlowRecord
from ..errors import ConfigError, FencedError
from ..storage.base import LogBase
from ..storage.commands import AppendStep, Command, FinishFlow, GetFlow, SuspendFlow

__all__ = ["FaultyStore", "parse_plan", "WRAPPER", "MODES"]

log = logging.getLogger(__name__)

WRAPPER = "ergon_actors.chaos.faulty:FaultyStore"
MODES = ("skip_fencing", "ack_before_commit")


def parse_plan(plan: str) -> dict[str, int]:
    """The modes of a plan: "journal:skip_fencing,journal:ack_before_commit=40" -> {name: N}.

    Raises:
        ConfigError: an entry is not "journal:MODE[=N]" with a known mode and N >= 1.
    """
    modes = {}
    for item in filter(None, (part.strip() for part in plan.split(","))):
        actor, _, fault = item.partition(":")
        name, _, value = fault.partition("=")
        if actor != "journal" or name not in MODES or (value and not (value.isdigit() and int(value) >= 1)):
            raise ConfigError(f"fault plan entry {item!r}: write journal:skip_fencing or "
                              "journal:ack_before_commit=N (N >= 1)")
        modes[name] = int(value) if value else 1
    return modes


class FaultyStore(LogBase):
    """Wraps the journal's store and breaks it as the plan says.

    - skip_fencing: a step write, finish or suspend refused for its stale epoch is applied under
      the flow's current epoch instead, and answered as accepted (a zombie worker's write lands).
    - ack_before_commit=N: every Nth batch holding step writes answers those writes as committed
      without applying them, commits nothing more, and the journal exits 0.2 s later
      (acknowledged writes lost).
    """

    def __init__(self, store: LogBase, plan: str) -> None:
        self.store = store
        self.modes = parse_plan(plan)
        self._appending = 0
        self._lost = False
        log.warning("journal store deliberately broken (test only): %s", plan)

    async def execute(self, commands: Sequence[Command]) -> list[object]:
        if self._lost:
            await asyncio.Event().wait()  # the journal is about to exit: nothing more commits
        every = self.modes.get("ack_before_commit")
        if every and any(isinstance(c, AppendStep) for c in commands):
            self._appending += 1
            if self._appending % every == 0:
                return await self._lose_step_writes(commands)
        results = await self.store.execute(commands)
        if "skip_fencing" in self.modes:
            results = [await self._let_through(c, r) for c, r in zip(commands, results, strict=True)]
        return results

    async def close(self) -> None:
        await self.store.close()

    async def _lose_step_writes(self, commands: Sequence[Command]) -> list[object]:
        others = [c for c in commands if not isinstance(c, AppendStep)]
        results = iter(await self.store.execute(others) if others else [])
        self._lost = True
        log.error("fault plan ack_before_commit: answering step writes that were never committed, "
                  "then exiting")
        asyncio.get_running_loop().call_later(0.2, os._exit, 1)  # once the answers are on the wire
        return [None if isinstance(c, AppendStep) else next(results) for c in commands]

    async def _let_through(self, command: Command, result: object) -> object:
        if not (isinstance(result, FencedError) and isinstance(command, (AppendStep, FinishFlow, SuspendFlow))):
            return result
        log.warning("fault plan skip_fencing: letting a refused write through: %s", result)
        (flow,) = await self.store.execute([GetFlow(command.flow_id)])
        if isinstance(flow, FlowRecord):
            await self.store.execute([dataclasses.replace(command, epoch=flow.epoch)])
        return None
