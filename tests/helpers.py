"""Helpers shared by the tests: deadlines instead of sleeps, a side-effect ledger, process checks."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

import msgpack
import psutil


def run(coro: Awaitable, timeout: float = 60.0):
    """Run a coroutine on a fresh event loop with a deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.02,
               what: str = "condition"):
    """Poll until predicate() is truthy; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def wait_until_async(predicate: Callable[[], Awaitable[object]], timeout: float = 20.0,
                           interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def note(ledger: str, key: str, position: int, event: str) -> None:
    """Append one side-effect line; a single O_APPEND write, so lines never interleave."""
    line = json.dumps({"key": key, "pos": position, "event": event, "pid": os.getpid(),
                       "t": time.time()}) + "\n"
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_ledger(ledger: str) -> list[dict]:
    if not os.path.exists(ledger):
        return []
    with open(ledger) as f:
        return [json.loads(line) for line in f if line.strip()]


def starts(entries: list[dict]) -> dict[str, list[int]]:
    """Positions of step starts per flow key, in the order they happened."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for e in entries:
        if e["event"] == "start":
            by_key[e["key"]].append(e["pos"])
    return by_key


def assert_no_step_ran_after_ack(entries: list[dict], keys: list[str], steps: int) -> int:
    """Every step ran, and none ran again once a later step had started.

    A later step starts only after the earlier one's result was acknowledged by the journal,
    so a repeat after that would be a completed step running twice. Returns the number of
    re-executions (steps that ran again because their result was never acknowledged).
    """
    by_key = starts(entries)
    reruns = 0
    for key in keys:
        seen = by_key.get(key, [])
        assert sorted(set(seen)) == list(range(steps)), f"flow {key}: steps started {seen}"
        assert seen == sorted(seen), f"flow {key}: a completed step ran again: {seen}"
        reruns += len(seen) - steps
    return reruns


def assert_gone(pids: list[int], timeout: float = 2.0) -> None:
    """Every pid has exited (zombies count as gone) within `timeout` seconds."""
    def alive() -> list[int]:
        out = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    out.append(pid)
            except psutil.NoSuchProcess:
                pass
        return out
    deadline = time.monotonic() + timeout
    while alive():
        if time.monotonic() > deadline:
            raise AssertionError(f"processes still alive after {timeout}s: {alive()}")
        time.sleep(0.02)


def nested_ext(code: int, depth: int) -> bytes:
    """`depth` msgpack ext payloads of type `code`, each the only content of the one around it."""
    data = msgpack.packb(0)
    for _ in range(depth):
        data = msgpack.packb(msgpack.ExtType(code, data))
    return data
