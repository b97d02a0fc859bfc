"""A real redis-server for tests: started on a free loopback port in its own directory, with AOF on.

    server = RedisServer(tmp_dir).start()
    server.url            # redis://127.0.0.1:PORT/0
    server.kill()         # SIGKILL, as a crash would
    server.start()        # again on the same port and directory: it replays its AOF
    server.stop()         # SIGTERM, then SIGKILL after a grace period

There is no skip: when redis-server is missing the test fails, telling how to get it.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

START_DEADLINE = 10.0  # seconds redis-server has to answer PING


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        pytest.fail("redis-server is not on PATH, so the Redis store tests cannot run: run "
                    "./scripts/test.sh (it installs it) or `apt-get install redis-server` (Debian)",
                    pytrace=False)
    return path


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


class RedisServer:
    """One redis-server process; start() again after kill() or stop() reuses the port and dir."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = self.directory / "redis-server.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> RedisServer:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"redis-server already running as pid {self.process.pid}")
        command = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                   "--dir", str(self.directory), "--daemonize", "no"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_DEADLINE
        while not ping(self.port):
            if self.process.poll() is not None:
                self.process = None
                pytest.fail(f"redis-server exited at start; its log ({self.log_path}):\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not answer PING on port {self.port} within "
                            f"{START_DEADLINE:g}s; its log:\n{self._log_tail()}")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL the server, as a crash of its host process would (no shutdown, no final fsync)."""
        self._signal(signal.SIGKILL, 10.0)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited after `grace` seconds; waits for the exit."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL, 10.0)

    def _signal(self, sig: int, wait: float) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
        process.wait(wait)

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


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
