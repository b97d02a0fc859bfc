"""DropCounter: every drop counted; at most one log line per interval per peer."""

import asyncio
import logging

import pytest

from ergon_actors.runtime.drops import DropCounter

pytestmark = pytest.mark.timeout(30)
log = logging.getLogger("ergon_actors.test_drops")


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == log.name]


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_a_burst_costs_one_line_then_one_summary(caplog):
    async def body():
        drops = DropCounter(log, "journal", interval=1.0)
        for i in range(1204):
            drops.drop("A", f"reason {i}")
        drops.drop("B", "short")
        assert drops.total == 1205
        assert lines(caplog) == ["journal dropped a malformed message from A: reason 0",
                                 "journal dropped a malformed message from B: short"]
        await until(lambda: len(lines(caplog)) == 3)
        assert lines(caplog)[2] == ("journal dropped 1,203 malformed messages from A in the last 1 s: "
                                    "last reason reason 1203")
        drops.drop("A", "again")  # within the next interval: counted, summed up at its end
        await until(lambda: len(lines(caplog)) == 4)
        assert lines(caplog)[3] == "journal dropped 1 malformed message from A in the last 1 s: last reason again"
        await asyncio.sleep(1.5)  # a quiet interval closes A's window without a line
        assert len(lines(caplog)) == 4
        drops.drop("A", "later")
        assert lines(caplog)[4] == "journal dropped a malformed message from A: later"

    caplog.set_level(logging.WARNING, log.name)
    asyncio.run(body())


def test_many_peers_share_one_line_beyond_the_limit(caplog):
    async def body():
        drops = DropCounter(log, "journal", interval=1.0, max_peers=4)
        for peer in range(1000):
            drops.drop(f"peer-{peer}", "bad")
        assert drops.total == 1000
        assert len(lines(caplog)) == 5
        assert lines(caplog)[-1] == "journal dropped a malformed message from other peers: bad"
        await until(lambda: len(lines(caplog)) == 6)
        assert "dropped 995 malformed messages from other peers" in lines(caplog)[5]

    caplog.set_level(logging.WARNING, log.name)
    asyncio.run(body())
