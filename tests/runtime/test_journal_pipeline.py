"""Batches in flight on Redis: the journal sends a batch while the one before it is under way.

A raw peer on the journal's socket sends two batches while Redis is SIGSTOPped, so both are under
way when it stops answering; once Redis runs again, each request is answered exactly once, every
write is in Redis, and the second batch saw the first one's writes (Redis applied them in order).
"""

import asyncio
import os
import signal
import time

import pytest
import zmq

from ergon_actors.core import FlowRecord
from ergon_actors.runtime import Supervisor
from ergon_actors.runtime.journal import IN_FLIGHT
from ergon_actors.storage.commands import CancelFlow, Command, GetFlow, Scheduled, ScheduleFlow, pack, unpack
from ergon_actors.storage.redis import RedisExecutionLog
from tests.helpers import run, wait_until_async
from tests.redis_server import RedisServer
from tests.runtime.conftest import FLOWS

pytestmark = [pytest.mark.timeout(150), pytest.mark.slow]

N = 50  # flows per batch
UNSERVED = "NobodyServesThis"  # no worker claims them: their state stays what the batches made it


class Peer:
    """A DEALER socket of the test's own on the journal's address, counting every answer."""

    def __init__(self, address: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address)
        self.answers: dict[int, list[object]] = {}

    def send(self, requests: list[tuple[int, Command]]) -> None:
        self.sock.send(pack("req", requests))

    def take(self, until: float) -> None:
        """Keep what has arrived, waiting up to `until` (monotonic) for something."""
        while self.sock.poll(max(0, int((until - time.monotonic()) * 1000))):
            kind, body = unpack(self.sock.recv())
            assert kind == "rep", kind
            for rid, result in body:
                self.answers.setdefault(rid, []).append(result)
            until = 0.0

    def wait_for(self, rids: set[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not rids <= self.answers.keys():
            assert time.monotonic() < deadline, f"unanswered: {sorted(rids - self.answers.keys())[:5]}"
            self.take(min(deadline, time.monotonic() + 0.5))

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


def schedules(prefix: str, first_rid: int) -> list[tuple[int, Command]]:
    return [(first_rid + i, ScheduleFlow(f"{prefix}{i}", UNSERVED, b"\x90")) for i in range(N)]


async def in_flight(sup: Supervisor, n: int) -> bool:
    journal = sup.snapshot().journal
    assert journal.in_flight <= IN_FLIGHT
    return journal.in_flight >= n


async def failing(sup: Supervisor) -> bool:
    return not sup.snapshot().journal.store_ok


@pytest.mark.parametrize("outage", ["short", "past_the_timeout"])
def test_two_batches_in_flight_through_a_sigstopped_redis_are_each_answered_once(tmp_path, outage):
    server = RedisServer(tmp_path / "redis").start()
    stopped = False

    async def body() -> None:
        nonlocal stopped
        async with Supervisor(FLOWS, store=server.url, workers=1) as sup:
            peer = Peer(sup.journal_address)
            try:
                first = schedules("a", 1)
                second = [(1000, CancelFlow("a0")), *schedules("b", 1001)]  # needs the first batch applied
                os.kill(server.pid, signal.SIGSTOP)
                stopped = True
                peer.send(first)
                await wait_until_async(lambda: in_flight(sup, 1), timeout=20, what="the first batch under way")
                peer.send(second)
                await wait_until_async(lambda: in_flight(sup, 2), timeout=20, what="both batches under way")
                if outage == "past_the_timeout":  # the store's calls time out: both batches are retried
                    await wait_until_async(lambda: failing(sup), timeout=60, what="the outage seen")
                else:
                    await asyncio.sleep(1.0)  # the outage itself: nothing to wait for
                    assert sup.snapshot().journal.store_ok  # no call timed out: both wait for their replies
                os.kill(server.pid, signal.SIGCONT)
                stopped = False
                rids = {rid for rid, _ in first + second}
                await asyncio.to_thread(peer.wait_for, rids, 60)
                # answers leave in order: anything more for the batches comes before this one's
                peer.send([(5000, GetFlow("b0"))])
                await asyncio.to_thread(peer.wait_for, {5000}, 30)
            finally:
                if stopped:
                    os.kill(server.pid, signal.SIGCONT)
                peer.close()
        assert all(len(results) == 1 for results in peer.answers.values()), peer.answers
        for rid, command in first + second[1:]:
            (result,) = peer.answers[rid]
            assert isinstance(command, ScheduleFlow) and isinstance(result, Scheduled), result
            assert result.flow_id == command.flow_id
            if outage == "short":  # sent once: created by this call (a retry may find it made)
                assert result.created
        assert peer.answers[1000] == ["CANCELLED"]  # the cancel ran after the schedule it needs
        store = await RedisExecutionLog(server.url).connect()
        try:
            flows = await store.execute([GetFlow(c.flow_id) for _, c in first + second[1:]])
        finally:
            await store.close()
        assert all(isinstance(f, FlowRecord) for f in flows)
        assert [f.status for f in flows if isinstance(f, FlowRecord)] == ["CANCELLED"] + ["PENDING"] * (2 * N - 1)

    try:
        run(body(), 140)
    finally:
        server.stop()
