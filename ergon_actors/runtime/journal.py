"""The journal actor: the only writer of the store.

Every request that has arrived when the previous commit ends joins the next one: one
transaction (group commit), then every answer. An answer means the write is committed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import defaultdict
from typing import Any

import zmq
import zmq.asyncio

from ..config import Settings
from ..errors import ErgonError, FencedError, ProtocolError, StoreError
from ..storage import open_store
from ..storage.base import LogBase
from ..wire import Command, pack, unpack
from .actor import SupervisorLink
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
        while len(batch) < MAX_MESSAGES and self.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            identity, *frames = await self.sock.recv_multipart()
            try:
                if len(frames) != 1:
                    raise ProtocolError(f"expected 1 frame, got {len(frames)}")
                kind, body = unpack(frames[0])
                if kind != "req" or not isinstance(body, list):
                    raise ProtocolError(f"unexpected message kind {kind!r}")
                requests = [(rid, c) for rid, c in body]
            except (ProtocolError, TypeError, ValueError) as exc:
                self.stats["malformed"] += 1
                log.warning("journal dropped a malformed message from %s: %s", identity.hex(), exc)
                continue
            batch.append((identity, requests))
        return batch

    async def _commit(self, batch: list[tuple[bytes, list]]) -> None:
        commands = [c for _, requests in batch for _, c in requests if isinstance(c, COMMAND_TYPES)]
        if not commands and not batch:
            return
        results = iter(await self._execute(commands))
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
                else:
                    result = ProtocolError(f"not a journal command: {type(command).__name__}")
                answers.append((rid, result))
            self.sock.send_multipart((identity, pack("rep", answers)))

    async def _execute(self, commands: list[Command]) -> list[object]:
        delay = 0.05
        while True:
            try:
                return await self.store.execute(commands)
            except StoreError as exc:  # unreachable store: hold the batch, retry (clients wait)
                log.warning("journal commit failed, retrying in %.2fs: %s", delay, exc)
            except Exception as exc:
                log.exception("journal commit of %d commands failed; answering each alone", len(commands))
                return [await self._one(c) for c in commands]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _one(self, command: Command) -> object:
        try:
            (result,) = await self.store.execute([command])
            return result
        except Exception as exc:
            return exc if isinstance(exc, ErgonError) else StoreError(f"{type(exc).__name__}: {exc}")


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
    sock = make_socket(ctx, zmq.ROUTER, settings.high_water_mark)
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
