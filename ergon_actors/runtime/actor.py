"""The child side of an actor process: its link to the supervisor and its entry point.

A child is started as `python -m ergon_actors.runtime.actor ROLE NAME PARENT_PID SPEC_JSON`.
It dies with its parent, ignores SIGINT (the supervisor owns Ctrl-C), reports READY with
its pid, sends heartbeats, and obeys control messages ("drain", "stop").
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

import zmq
import zmq.asyncio

from ..wire import pack, unpack
from .transport import die_with_parent, make_socket

__all__ = ["SupervisorLink", "main"]

log = logging.getLogger(__name__)


class SupervisorLink:
    """DEALER socket to the supervisor's ROUTER; the identity is the actor's name."""

    def __init__(self, ctx: zmq.asyncio.Context, address: str, name: str) -> None:
        self.name = name
        self.sock = make_socket(ctx, zmq.DEALER, 1000, identity=name.encode())
        self.sock.connect(address)

    def send(self, kind: str, body: Any = None) -> None:
        self.sock.send(pack(kind, body))

    async def receive(self, timeout: float) -> tuple[str, Any] | None:
        """The next control message, or None after `timeout` seconds."""
        if not await self.sock.poll(timeout * 1000, zmq.POLLIN):
            return None
        return unpack(await self.sock.recv())

    def close(self) -> None:
        self.sock.close(linger=0)


def main(argv: list[str]) -> int:
    role, name, parent_pid, spec_json = argv
    die_with_parent(int(parent_pid))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spec = json.loads(spec_json)
    sys.path[:] = spec["sys_path"] + [p for p in sys.path if p not in spec["sys_path"]]
    logging.basicConfig(level=spec.get("log_level", "WARNING"), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s [{name} pid={os.getpid()}] %(name)s: %(message)s")
    if role == "journal":
        from .journal import run_journal as run
    elif role == "worker":
        from .worker import run_worker as run
    else:
        log.error("unknown actor role %r", role)
        return 64
    try:
        return asyncio.run(run(name, spec))
    except Exception:
        log.exception("actor %s crashed", name)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
