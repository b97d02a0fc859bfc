"""A real redis-server for tests: started on a free loopback port in its own directory, with AOF on.

    server = RedisServer(tmp_dir).start()
    server.url            # redis://127.0.0.1:PORT/0
    server.kill()         # SIGKILL, as a crash would
    server.start()        # again on the same port and directory: it replays its AOF
    server.stop()         # SIGTERM, then SIGKILL after a grace period

There is no skip: when redis-server is missing the test fails, telling how to get it.
"""

from __future__ import annotations

import socket

import pytest

from ergon_actors import testing
from ergon_actors.chaos import ChaosError

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when a server on the port answers PING with PONG (and is not still loading)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(testing.RedisServer):
    """The package's RedisServer; a server that cannot start fails the test (never a skip)."""

    def start(self, deadline: float = 10.0) -> RedisServer:
        try:
            return super().start(deadline)
        except ChaosError as exc:
            pytest.fail(f"{exc}\nThe Redis tests cannot run: run ./scripts/test.sh (it installs "
                        "redis-server) or `apt-get install redis-server` (Debian)", pytrace=False)


async def empty_store(url: str, prefix: str):
    """A RedisExecutionLog under `prefix`, with every key under that prefix deleted first."""
    import redis.asyncio as aioredis

    from ergon_actors.storage.redis import RedisExecutionLog

    raw = aioredis.Redis.from_url(url)
    try:
        stale = [key async for key in raw.scan_iter(match=f"{prefix}:*", count=1000)]
        if stale:
            await raw.delete(*stale)
    finally:
        await raw.aclose()
    return await RedisExecutionLog(url, prefix=prefix).connect()
