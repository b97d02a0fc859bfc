"""ZeroMQ sockets, endpoints, spawning actor processes and the parent-death guard."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time

import zmq
import zmq.asyncio

from ..config import DEFAULT_MAX_MESSAGE_SIZE

__all__ = ["endpoint", "make_socket", "spawn", "die_with_parent", "kill_with_parent", "free_tcp_port"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# Resolved once here: the child calls prctl between fork and exec, where loading a library is unsafe.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def kill_with_parent() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; returns whether it took (False elsewhere).

    Used as `preexec_fn`, between fork and exec: the child is covered from its first instruction,
    also while Python is still importing, long before it could set this up itself.
    """
    return _LIBC is not None and _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


def endpoint(transport: str, run_dir: str, name: str) -> str:
    """The address an actor binds: ipc://RUN_DIR/NAME.sock, or a free loopback TCP port."""
    if transport == "ipc":
        return f"ipc://{os.path.join(run_dir, name)}.sock"
    return f"tcp://127.0.0.1:{free_tcp_port()}"


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_socket(ctx: zmq.asyncio.Context, kind: int, hwm: int, identity: bytes | None = None, *,
                max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE) -> zmq.asyncio.Socket:
    """A socket that never lingers on close, bounds its queues at `hwm` messages and
    disconnects a peer that sends a message over `max_message_size` bytes (None: any size)."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.MAXMSGSIZE, -1 if max_message_size is None else max_message_size)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    if kind == zmq.ROUTER:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)  # a reply to a vanished peer is dropped, not an error
    return sock


async def spawn(argv: list[str]) -> asyncio.subprocess.Process:
    """Start `argv` with SIGINT blocked, the child's stdin on /dev/null and its output on ours.

    The block is inherited across exec: a Ctrl-C that reaches the child while Python is still
    importing stays pending until the child's entry sets SIGINT to ignored, which discards it.
    Only the spawning thread's mask changes, and only for the spawn; a SIGINT meant for this
    process meanwhile is taken by another thread or delivered once the block is lifted.
    """
    blocked_before = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        # The fork happens before this awaits anything, so a spawn running concurrently that
        # lifts the block cannot let a SIGINT into this child.
        return await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                    preexec_fn=kill_with_parent)
    finally:
        if not blocked_before:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def die_with_parent(parent_pid: int) -> None:
    """Make this process exit within a second of its parent's death, whatever killed the parent.

    Linux delivers SIGKILL on the parent's death (prctl), and a parent that died before prctl took
    effect is seen at once here; elsewhere a thread looks at the parent four times a second.
    """
    watched = kill_with_parent()

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(70)  # orphaned: the supervisor is gone, nothing here is worth keeping
            time.sleep(0.25)

    if os.getppid() != parent_pid:
        os._exit(70)
    if not watched:
        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
