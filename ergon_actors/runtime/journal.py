"""The journal actor: the only writer of the store.

Every request that has arrived when the previous commit ends joins the next one: one
transaction (group commit), then every answer. An answer means the write is committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from typing import Any

import zmq
import zmq.asyncio

from ..config import Settings
from ..core import FlowRecord
from ..errors import ErgonError, FencedError, ProtocolError, StoreError
from ..storage import open_store
from ..storage.base import WAKING, LogBase
from ..storage.commands import AppendStep, ClaimFlows, Command, FinishFlow, GetFlow, SuspendFlow, pack, unpack
from .actor import SupervisorLink
from .drops import DropCounter
from .transport import make_socket

__all__ = ["run_journal", "COMMAND_TYPES"]

log = logging.getLogger(__name__)

COMMAND_TYPES = tuple(Command.__args__)
MAX_MESSAGES = 4096  # messages folded into one transaction at most


class Journal:
    """Receives command batches on a ROUTER socket and commits them together."""

    def __init__(self, store: LogBase, sock: zmq.asyncio.Socket, link: SupervisorLink,
                 settings: Settings) -> None:
        self.store = store
        self.sock = sock
        self.link = link
        self.settings = settings
        self.stopping = False
        self.stats = {"commits": 0, "commands": 0, "fenced": 0, "malformed": 0, "largest": 0}
        self.claimers: dict[bytes, float] = {}  # clients that claim flows, by when they last did
        self.drops = DropCounter(log, "journal")
        self.faults = _journal_faults(settings.fault_plan)
        self._appending_commits = 0
        if self.faults:
            log.warning("journal fault plan active (test only, deliberately broken): %s", self.faults)

    async def run(self) -> None:
        poller = zmq.asyncio.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.link.sock, zmq.POLLIN)
        interval = self.settings.heartbeat_interval
        beat_at = 0.0
        while not self.stopping:
            ready = dict(await poller.poll(interval * 1000))
            if self.link.sock in ready:
                await self._control()
            if self.sock in ready:
                await self._commit(await self._collect())
            if time.monotonic() >= beat_at:
                self.link.send("hb", self.stats)
                beat_at = time.monotonic() + interval

    async def _control(self) -> None:
        while self.link.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            kind, _ = unpack(await self.link.sock.recv())
            if kind == "stop":
                log.info("journal stopping on request")
                self.stopping = True

    async def _collect(self) -> list[tuple[bytes, list]]:
        batch = []
        until = time.monotonic() + self.settings.heartbeat_interval  # slow messages must not delay heartbeats
        while (len(batch) < MAX_MESSAGES and time.monotonic() < until
               and self.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN):
            identity, *frames = await self.sock.recv_multipart()
            try:
                if len(frames) != 1:
                    raise ProtocolError(f"expected 1 frame, got {len(frames)}")
                kind, body = unpack(frames[0])
                if kind != "req" or not isinstance(body, list):
                    raise ProtocolError(f"unexpected message kind {kind!r}")
                requests = [(rid, c) for rid, c in body]
            except (ProtocolError, TypeError, ValueError) as exc:
                self.drops.drop(identity.hex(), exc)
                self.stats["malformed"] = self.drops.total
                continue
            for _, command in requests:
                if type(command) is ProtocolError:  # answered with this error, and counted
                    self.drops.drop(identity.hex(), command)
                    self.stats["malformed"] = self.drops.total
            batch.append((identity, requests))
        return batch

    async def _commit(self, batch: list[tuple[bytes, list]]) -> None:
        commands = [c for _, requests in batch for _, c in requests if isinstance(c, COMMAND_TYPES)]
        if not commands and not batch:
            return
        if self.faults.get("ack_before_commit") and any(isinstance(c, AppendStep) for c in commands):
            await self._ack_before_commit(batch)
        results = await self._execute(commands)
        if "skip_fencing" in self.faults:
            results = [await self._let_through(c, r) for c, r in zip(commands, results)]
        results = iter(results)
        self.stats["commits"] += 1
        self.stats["commands"] += len(commands)
        self.stats["largest"] = max(self.stats["largest"], len(commands))
        for identity, requests in batch:
            answers = []
            for rid, command in requests:
                if isinstance(command, COMMAND_TYPES):
                    result = next(results)
                    if isinstance(result, FencedError):
                        self.stats["fenced"] += 1
                        log.info("journal refused a write: %s", result)
                elif type(command) is ProtocolError:  # a command whose fields were malformed
                    result = command
                else:
                    result = ProtocolError(f"not a journal command: {type(command).__name__}")
                answers.append((rid, result))
            self.sock.send_multipart((identity, pack("rep", answers)))
        self._wake_claimers(batch, commands)

    def _wake_claimers(self, batch: list[tuple[bytes, list]], commands: list[Command]) -> None:
        """Tell every claiming client that runnable work was just committed, so it claims now
        instead of at its next poll."""
        now = time.monotonic()
        for identity, requests in batch:
            if any(isinstance(c, ClaimFlows) for _, c in requests):
                self.claimers[identity] = now
        if not any(isinstance(c, WAKING) for c in commands):
            return
        wake = pack("wake", None)
        for identity, seen in list(self.claimers.items()):
            if now - seen > 60.0:  # gone quiet: a dead or restarted client
                del self.claimers[identity]
            else:
                self.sock.send_multipart((identity, wake))

    async def _execute(self, commands: list[Command]) -> list[object]:
        delay = 0.05
        while True:
            try:
                return await self.store.execute(commands)
            except StoreError as exc:  # unreachable store: hold the batch, retry (clients wait)
                log.warning("journal commit failed, retrying in %.2fs: %s", delay, exc)
            except Exception:
                log.exception("journal commit of %d commands failed; answering each alone", len(commands))
                return [await self._one(c) for c in commands]
            await self._wait_for_store(delay)
            delay = min(delay * 2, 2.0)

    async def _wait_for_store(self, seconds: float) -> None:
        """Sleep, heartbeating: a journal waiting for its store is not hung (restarting it cannot
        help, and each failed restart would count toward the restart intensity)."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            self.link.send("hb", self.stats)
            await asyncio.sleep(min(left, self.settings.heartbeat_interval))

    async def _one(self, command: Command) -> object:
        try:
            (result,) = await self.store.execute([command])
            return result
        except Exception as exc:
            return exc if isinstance(exc, ErgonError) else StoreError(f"{type(exc).__name__}: {exc}")

    # -- fault plan: TEST ONLY. Deliberately broken modes, chosen with Settings.fault_plan
    # (ERGON_FAULT_PLAN), that let tests prove the chaos verifier catches real bugs
    # (tests/chaos). Nothing here runs unless a plan names it.

    async def _ack_before_commit(self, batch: list[tuple[bytes, list]]) -> None:
        """journal:ack_before_commit=N: on every Nth commit holding step writes, answer those
        writes as committed, then exit without committing anything (acknowledged writes lost)."""
        self._appending_commits += 1
        if self._appending_commits % self.faults["ack_before_commit"]:
            return
        for identity, requests in batch:
            answers = [(rid, None) for rid, c in requests if isinstance(c, AppendStep)]
            if answers:
                self.sock.send_multipart((identity, pack("rep", answers)))
        await asyncio.sleep(0.2)  # let ZeroMQ's I/O thread put the answers on the wire
        log.error("journal fault plan ack_before_commit: exiting before the commit")
        os._exit(1)

    async def _let_through(self, command: Command, result: object) -> object:
        """journal:skip_fencing: a write refused for its stale epoch is applied under the flow's
        current epoch instead, and answered as accepted (a zombie worker's write lands)."""
        if not (isinstance(result, FencedError) and isinstance(command, (AppendStep, FinishFlow, SuspendFlow))):
            return result
        self.stats["fenced"] += 1
        log.warning("journal fault plan skip_fencing: letting a refused write through: %s", result)
        flow = await self._one(GetFlow(command.flow_id))
        if isinstance(flow, FlowRecord):
            await self._one(dataclasses.replace(command, epoch=flow.epoch))
        return None


def _journal_faults(plan: str) -> dict[str, int]:
    """The journal's entries of a fault plan: "journal:skip_fencing,journal:ack_before_commit=40"."""
    faults = {}
    for item in filter(None, (part.strip() for part in plan.split(","))):
        actor, _, fault = item.partition(":")
        if actor == "journal":
            name, _, value = fault.partition("=")
            faults[name] = int(value) if value else 1
    return faults


async def run_journal(name: str, spec: dict[str, Any]) -> int:
    settings = Settings(**spec["settings"])
    ctx = zmq.asyncio.Context()
    link = SupervisorLink(ctx, spec["supervisor"], name)
    try:
        store = await open_store(settings.store, synchronous=settings.synchronous)
    except ErgonError as exc:
        link.send("failed", str(exc))
        log.error("journal cannot open store %s: %s", settings.store, exc)
        link.close()
        return 78
    sock = make_socket(ctx, zmq.ROUTER, settings.high_water_mark, max_message_size=settings.max_message_size)
    sock.bind(spec["address"])
    journal = Journal(store, sock, link, settings)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: setattr(journal, "stopping", True))
    link.send("ready", {"pid": os.getpid(), "address": spec["address"]})
    try:
        await journal.run()
    finally:
        await store.close()
        sock.close(linger=0)
        link.close()
        ctx.term()
    return 0
