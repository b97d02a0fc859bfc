"""One Redis connection on which calls are sent as they are made and answered in that order.

Redis runs the commands of one connection in the order they arrive, so calls made while earlier
ones are still under way (the journal's batches in flight) are applied in the order they were
made. A call sent on a connection that broke before its reply came fails (ConnectionError), and
so does every later call sent on it: none of them is sent again here, so a later call never
overtakes an earlier one that failed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

__all__ = ["OrderedConnection"]


async def _after(step: asyncio.Future[bool] | None) -> None:
    """Wait for the step before (the send or the read of the call made before) to end."""
    if step is not None and not step.done():
        await asyncio.shield(step)


class OrderedConnection:
    """Sends each call at once, in the order made, on one connection; reads replies in that order."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._conn: AbstractConnection | None = None
        self._broken = 0  # how many connections broke: a call under way when one did fails
        self._sent: asyncio.Future[bool] | None = None  # the last call's send: True once written
        self._read: asyncio.Future[bool] | None = None  # the last call's read: True once read whole

    async def call(self, *args: Any) -> Any:
        """Send the command `args` and return its reply.

        Raises:
            redis.exceptions.ResponseError: Redis answered with an error.
            redis.exceptions.ConnectionError, TimeoutError: the connection broke while this call
                or an earlier one was under way; the command may or may not have been applied.
        """
        loop = asyncio.get_running_loop()
        broken, sent_before, read_before = self._broken, self._sent, self._read
        sent, read = self._sent, self._read = loop.create_future(), loop.create_future()
        conn: AbstractConnection | None = None
        ok = False
        try:
            await _after(sent_before)
            self._check(broken)
            conn = self._connection()
            await conn.send_packed_command(conn.pack_command(*args), check_health=False)
            sent.set_result(True)
            await _after(read_before)
            self._check(broken)
            try:
                reply = await conn.read_response()
            except ResponseError:  # an error reply: the connection is fine
                ok = True
                raise
            ok = True
            return reply
        finally:
            if not ok and conn is not None and conn is self._conn:
                self._conn = None  # broken, or cut mid-reply: calls under way on it fail
                self._broken += 1
                await conn.disconnect(nowait=True)
            if not sent.done():
                sent.set_result(False)
            read.set_result(ok)

    def _check(self, broken: int) -> None:
        if self._broken != broken:
            raise RedisConnectionError("the connection broke while an earlier call was under way")

    def _connection(self) -> AbstractConnection:
        if self._conn is None:
            pool = self._client.connection_pool
            self._conn = pool.connection_class(**pool.connection_kwargs)  # connects on its first send
        return self._conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._broken += 1
            await conn.disconnect(nowait=True)
