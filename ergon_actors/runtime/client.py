"""JournalClient: an ExecutionLog whose commands go to the journal actor over ZeroMQ.

Commands issued in the same event-loop turn leave in one message. A request unanswered after
`resend_after` seconds is sent again (the journal's commands are idempotent), so a journal
restart costs latency, never a write; every unanswered request is also sent again at once when
the socket connects to a journal anew (a restarted journal), instead of after `resend_after`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import cast

import zmq
import zmq.asyncio

from ..config import DEFAULT_MAX_MESSAGE_SIZE
from ..errors import ActorStoppedError, MessageTooLargeError, ProtocolError
from ..storage.base import LogBase
from ..storage.commands import Command, pack_within, unpack
from .drops import DropCounter
from .transport import make_socket

__all__ = ["JournalClient"]

log = logging.getLogger(__name__)


class JournalClient(LogBase):
    """Sends commands to the journal at `address` and resolves each with its answer."""

    def __init__(self, ctx: zmq.asyncio.Context, address: str, *, hwm: int = 10_000,
                 resend_after: float = 2.0, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.address = address
        self.resend_after = resend_after
        self.max_message_size = max_message_size
        # Answers come from the journal at the address we chose, and a claim carries a flow's
        # whole journal: only what we send is bounded.
        self._sock = make_socket(ctx, zmq.DEALER, hwm, max_message_size=None)
        self._monitor = self._sock.get_monitor_socket(zmq.EVENT_CONNECTED)
        self._sock.connect(address)
        # The loop watches the socket's file descriptor itself: no zmq.asyncio future per answer
        self._raw: zmq.Socket[bytes] = zmq.Socket.shadow(self._sock.underlying)
        self._fd = cast(int, self._raw.getsockopt(zmq.FD))
        self._backlog: deque[bytes] = deque()  # frames waiting for room below the high-water mark
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[object], Command, float]] = {}
        self._outbox: list[tuple[int, Command]] = []
        self._asked = asyncio.Event()  # a request is pending: the resend check runs (idle, it sleeps)
        self._closed = False
        self.resent = 0
        self.drops = DropCounter(log, "journal client")
        loop = asyncio.get_running_loop()
        loop.add_reader(self._fd, self._events)
        self._tasks = [loop.create_task(self._resend()), loop.create_task(self._reconnects())]

    async def execute(self, commands: Sequence[Command]) -> list[object]:
        if self._closed:
            raise ActorStoppedError("journal client is closed")
        loop = asyncio.get_running_loop()
        futures = []
        now = time.monotonic()
        if not self._outbox:
            loop.call_soon(self._flush)
        self._asked.set()
        for command in commands:
            request_id = next(self._ids)
            future = loop.create_future()
            self._pending[request_id] = (future, command, now)
            self._outbox.append((request_id, command))
            futures.append(future)
        if len(futures) == 1:
            return [await futures[0]]
        return list(await asyncio.gather(*futures))

    def _flush(self) -> None:
        batch, self._outbox = self._outbox, []
        if batch and not self._closed:
            self._send(batch)

    def _send(self, batch: list[tuple[int, Command]]) -> None:
        try:
            frames, too_large = pack_within("req", batch, self.max_message_size)
        except TypeError as exc:  # a command that cannot be encoded fails its callers, not the rest
            for request_id, _ in batch:
                self._fail(request_id, ProtocolError(f"cannot encode request: {exc}"))
            return
        for (request_id, command), size in too_large:
            self._fail(request_id, MessageTooLargeError(type(command).__name__, size, self.max_message_size))
        for frame in frames:
            if not self._backlog:  # sent at once unless the high-water mark is reached
                try:
                    self._raw.send(frame, zmq.NOBLOCK)
                    continue
                except zmq.Again:
                    pass
            self._backlog.append(frame)  # in order, behind those already waiting (backpressure)
        self._events()  # a send can take the wake-up of answers that arrived meanwhile

    def _events(self) -> None:
        """Send what the high-water mark lets through and settle every answer that has arrived.

        Called when the socket's file descriptor fires and after each send. The descriptor is
        edge-triggered and any call on the socket can consume its signal, so this reads EVENTS
        until the socket has neither an answer to take nor room for a waiting frame.
        """
        raw = self._raw
        while not self._closed:
            events = cast(int, raw.getsockopt(zmq.EVENTS))
            if events & zmq.POLLOUT and self._backlog:
                try:
                    raw.send(self._backlog[0], zmq.NOBLOCK)
                except zmq.Again:  # the peer is slower than us: backpressure, wait for room
                    pass
                else:
                    self._backlog.popleft()
                    continue
            if not events & zmq.POLLIN:
                return
            self._drain()

    def _fail(self, request_id: int, exc: Exception) -> None:
        future = self._pending.pop(request_id)[0]
        if not future.done():
            future.set_exception(exc)

    def _drain(self) -> None:
        """Settle every answer that has arrived, without waiting."""
        while not self._closed:
            try:
                frame = self._raw.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._answer(frame)

    def _answer(self, frame: bytes) -> None:
        """Settle the requests a frame from the journal answers (or claim at once, for a Wake)."""
        try:
            kind, body = unpack(frame)
            if kind == "wake":  # the journal committed work a worker may claim now
                self.notify()
                return
            if kind != "rep":
                raise ProtocolError(f"unexpected {kind!r} from the journal")
            for request_id, result in body:
                entry = self._pending.pop(request_id, None)
                if entry is not None and not entry[0].done():
                    entry[0].set_result(result)
        except (ProtocolError, TypeError, ValueError) as exc:
            self.drops.drop(self.address, exc)

    async def _resend(self) -> None:
        while True:
            if not self._pending:
                self._asked.clear()
                await self._asked.wait()
            await asyncio.sleep(self.resend_after / 2)
            cutoff = time.monotonic() - self.resend_after
            late = [(rid, cmd) for rid, (fut, cmd, sent) in self._pending.items() if sent <= cutoff]
            if not late:
                continue
            now = time.monotonic()
            for rid, cmd in late:
                future, _, _ = self._pending[rid]
                self._pending[rid] = (future, cmd, now)
            self.resent += len(late)
            log.info("journal client resending %d unanswered requests to %s", len(late), self.address)
            self._send(sorted(late, key=lambda item: item[0]))

    async def _reconnects(self) -> None:
        """Send every unanswered request again each time the socket connects anew: the journal
        that had them died with them."""
        connected = 0
        while True:
            await self._monitor.recv_multipart()  # only EVENT_CONNECTED is asked for
            connected += 1
            if connected == 1 or not self._pending:
                continue
            now = time.monotonic()
            again = sorted((rid, cmd) for rid, (_, cmd, _) in self._pending.items())
            for rid, cmd in again:
                self._pending[rid] = (self._pending[rid][0], cmd, now)
            self.resent += len(again)
            log.info("journal client reconnected to %s: sending %d unanswered requests again", self.address,
                     len(again))
            self._send(again)

    async def close(self) -> None:
        """Fail every pending request with ActorStoppedError and close the socket."""
        if self._closed:
            return
        self._closed = True
        asyncio.get_running_loop().remove_reader(self._fd)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for future, _, _ in self._pending.values():
            if not future.done():
                future.set_exception(ActorStoppedError("journal client closed before the answer came"))
        self._pending.clear()
        self._sock.disable_monitor()
        self._monitor.close(linger=0)
        self._sock.close(linger=0)

