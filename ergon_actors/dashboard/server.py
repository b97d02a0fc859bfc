"""The dashboard listening on a host and port (uvicorn), alone or beside an embedded supervisor."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import uvicorn

from ..errors import ConfigError
from ..runtime.snapshot import Snapshot
from ..storage.base import LogBase
from .app import Dashboard
from .security import check_bind, new_token

__all__ = ["DashboardServer"]


class _Server(uvicorn.Server):
    """uvicorn's server, leaving the process's signal handlers to their owner when asked."""

    def __init__(self, config: uvicorn.Config, handle_signals: bool) -> None:
        super().__init__(config)
        self.handle_signals = handle_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self.handle_signals:
            with super().capture_signals():
                yield
        else:
            yield


class DashboardServer:
    """The dashboard of a store served over HTTP.

        async with DashboardServer("sqlite:///shop.db", token=token,
                                   snapshots=lambda: [supervisor.snapshot()]) as dashboard:
            print(dashboard.url)   # with ?token=: the link to open
            ...

    Without a token it listens on loopback only, with a random token of its own (see `url`).

    Raises:
        ConfigError: a host beyond loopback without a token, a short token, a port in use.
    """

    def __init__(self, store: str | LogBase, *, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
                 read_only: bool = False, snapshots: Callable[[], list[Snapshot]] | None = None,
                 chaos_dir: Path | None = None, refresh: float = 2.0, sample_interval: float = 5.0) -> None:
        check_bind(host, token)
        self.host = host
        self.token = token or new_token()
        self.dashboard = Dashboard(store, token=self.token, read_only=read_only, snapshots=snapshots,
                                   chaos_dir=chaos_dir, refresh=refresh, sample_interval=sample_interval)
        self._socket = self._bind(host, port)
        self.port: int = self._socket.getsockname()[1]
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        try:
            family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}: {exc}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
        return sock

    @property
    def url(self) -> str:
        """The link to open: it carries the token once, then the browser keeps a cookie."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    async def serve(self, *, handle_signals: bool = False) -> None:
        """Serve until stop() (or SIGINT/SIGTERM with handle_signals), then close the store."""
        config = uvicorn.Config(self.dashboard.app, log_level="warning", access_log=False, lifespan="on")
        self._server = _Server(config, handle_signals)
        try:
            await self._server.serve(sockets=[self._socket])
        finally:
            self._socket.close()
            await self.dashboard.close()

    def stop(self) -> None:
        """Ask the server to finish its open requests and stop."""
        if self._server is not None:
            self._server.should_exit = True

    async def __aenter__(self) -> DashboardServer:
        self._task = asyncio.get_running_loop().create_task(self.serve())
        while self._server is None or not self._server.started:
            if self._task.done():
                await self._task  # it failed to start: raise why
                raise ConfigError(f"the dashboard on {self.host} port {self.port} stopped as it started")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.stop()
        if self._task is not None:
            await self._task
