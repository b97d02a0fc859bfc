"""max_message_size: no larger message reaches the journal; a request that cannot fit fails clearly."""

import asyncio

import pytest

from ergon_actors import SqliteExecutionLog
from ergon_actors.errors import FlowFailedError, MessageTooLargeError
from ergon_actors.executor import Scheduler
from ergon_actors.runtime import Supervisor
from tests.helpers import run
from tests.runtime.conftest import FLOWS
from tests.runtime.flows import LedgerFlow, SizedFlow, expected

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
LIMIT = 256 * 1024


def test_messages_stay_under_max_message_size(tmp_path):
    ledger = str(tmp_path / "ledger")
    db = tmp_path / "journal.db"
    early = [f"{i}-" + "e" * 20_000 for i in range(30)]  # 600 kB of arguments in all
    late = [f"{i}-" + "l" * 20_000 for i in range(30)]

    async def body():
        async with await SqliteExecutionLog(db).connect() as store:
            for key in early:  # all due at once: the first claim answer has up to 600 kB
                await Scheduler(store).schedule(LedgerFlow(key, ledger), key[:8])
        async with Supervisor(FLOWS, store=f"sqlite:///{db}", workers=2, max_message_size=LIMIT) as sup:
            with pytest.raises(MessageTooLargeError, match=r"ScheduleFlow of .* exceeds max_message_size"):
                await sup.schedule(LedgerFlow("k" * LIMIT, ledger))
            # one batch of 600 kB of requests leaves as several messages
            ids = await asyncio.gather(*(sup.schedule(LedgerFlow(k, ledger), k[:8]) for k in late))
            for key in early + late:
                assert await sup.result(key[:8], timeout=60) == expected(key)
            assert ids == [k[:8] for k in late]
            # answers are not bounded: a claim carries a flow's whole journal
            assert len(await sup.client.list_flows()) == len(early) + len(late)
            for in_step in (True, False):
                flow_id = await sup.schedule(SizedFlow(LIMIT, in_step))
                with pytest.raises(FlowFailedError, match="MessageTooLargeError"):
                    await sup.result(flow_id, timeout=30)
            assert sup.snapshot().restarts == 0

    run(body(), 100)
