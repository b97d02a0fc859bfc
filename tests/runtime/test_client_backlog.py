"""JournalClient against a journal that is not there yet: requests past the high-water mark wait
in order and all reach the journal once it listens; malformed answers are dropped and counted."""

import asyncio

import zmq
import zmq.asyncio

from ergon_actors.runtime import JournalClient
from ergon_actors.storage.commands import GetFlow, pack, unpack
from tests.helpers import run, wait_until_async

REQUESTS = 200


async def answer(sock: zmq.asyncio.Socket, seen: list[int]) -> None:
    """Answer every request with None, noting the request ids in the order they arrive."""
    while len(seen) < REQUESTS:
        identity, frame = await sock.recv_multipart()
        kind, body = unpack(frame)
        assert kind == "req"
        seen.extend(rid for rid, _ in body)
        await sock.send_multipart([identity, pack("rep", [(rid, None) for rid, _ in body])])


async def scenario(address: str) -> None:
    ctx = zmq.asyncio.Context()
    client = JournalClient(ctx, address, hwm=1, resend_after=600.0)
    journal = ctx.socket(zmq.ROUTER)
    journal.setsockopt(zmq.LINGER, 0)
    try:
        calls = []
        for i in range(REQUESTS):  # one message each: a turn of the loop between them
            calls.append(asyncio.ensure_future(client.execute([GetFlow(f"flow-{i}")])))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        assert len(client._backlog) > REQUESTS // 2, "the high-water mark was never reached"
        journal.bind(address)
        identity, frame = await journal.recv_multipart()  # the first request, answered after the garbage
        await journal.send_multipart([identity, b"\xc1 not msgpack"])
        await journal.send_multipart([identity, pack("req", [])])  # a kind no journal sends
        seen = [rid for rid, _ in unpack(frame)[1]]
        await journal.send_multipart([identity, pack("rep", [(rid, None) for rid in seen])])
        await answer(journal, seen)
        assert await asyncio.gather(*calls) == [[None]] * REQUESTS
        assert seen == sorted(seen) and len(set(seen)) == REQUESTS  # in order, each once
        assert not client._backlog and client.resent == 0

        async def both_dropped() -> bool:
            return client.drops.total == 2

        await wait_until_async(both_dropped, what="the two malformed answers counted")  # sent before the answers
    finally:
        await client.close()
        journal.close(linger=0)
        ctx.destroy(linger=0)


def test_requests_past_the_high_water_mark_all_arrive_in_order(tmp_path):
    run(scenario(f"ipc://{tmp_path}/journal.sock"), timeout=60.0)
