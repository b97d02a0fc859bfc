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
        self._raw: zmq.Socket[bytes] = zmq.Socket.shadow(self._sock.underlying)  # sends without futures
        self._queued = 0  # sends waiting in zmq.asyncio's queue: later ones must queue behind them
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[object], Command, float]] = {}
        self._outbox: list[tuple[int, Command]] = []
        self._asked = asyncio.Event()  # a request is pending: the resend check runs (idle, it sleeps)
        self._closed = False
        self.resent = 0
        self.drops = DropCounter(log, "journal client")
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._receive()), loop.create_task(self._resend()),
                       loop.create_task(self._reconnects())]

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
            if not self._queued:  # sent at once, without a future, unless the high-water mark is reached
                try:
                    self._raw.send(frame, zmq.NOBLOCK)
                    continue
                except zmq.Again:
                    pass
            # zmq.asyncio queues sends in order while the high-water mark is reached (backpressure);
            # pyzmq's stubs say Awaitable, zmq.asyncio returns a Future
            self._queued += 1
            cast("asyncio.Future[object]", self._sock.send(frame)).add_done_callback(self._sent)
        # A send may take the socket's wake-up signal for answers that arrived meanwhile (it is
        # edge-triggered): the waiting receive would not see them, so take them here.
        if cast(int, self._raw.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            asyncio.get_running_loop().call_soon(self._drain)

    def _sent(self, future: asyncio.Future[object]) -> None:
        self._queued -= 1
        if not future.cancelled() and future.exception() is not None:
            log.warning("journal client send failed: %s", future.exception())

    def _fail(self, request_id: int, exc: Exception) -> None:
        future = self._pending.pop(request_id)[0]
        if not future.done():
            future.set_exception(exc)

    async def _receive(self) -> None:
        # The first frame through a future (waits for the journal), the rest that have arrived
        # by then without one.
        while True:
            self._answer(await self._sock.recv())
            self._drain()

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

