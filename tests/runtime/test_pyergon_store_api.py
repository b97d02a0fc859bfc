"""PyErgon's store API under the supervisor: the journal client serves it through the journal
actor, on SQLite and on Redis, beside flows the worker actors run."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import pytest

from ergon_actors.core import InvocationStatus, TaskStatus
from ergon_actors.runtime import Supervisor
from tests.helpers import run
from tests.runtime.conftest import FLOWS
from tests.runtime.flows import LedgerFlow, expected

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_the_store_api_through_the_journal_client(kind, tmp_path, request):
    if kind == "redis":
        url = f"redis://127.0.0.1:{request.getfixturevalue('own_redis').port}/0"
    else:
        url = f"sqlite:///{tmp_path}/journal.db"

    async def body() -> None:
        async with Supervisor(FLOWS, store=url, workers=1) as sup:
            client = sup.client
            flow_id = await sup.schedule(LedgerFlow("k", os.devnull))
            assert await sup.result(flow_id, timeout=60) == expected("k")
            assert await client.wait_for_all([flow_id]) == [(flow_id, TaskStatus.COMPLETE)]
            shown = await client.get_scheduled_flow(flow_id)
            assert (shown.flow_type, shown.status, shown.retry_count) == ("LedgerFlow", TaskStatus.COMPLETE, 0)
            invocations = await client.get_invocations_for_flow(flow_id)
            assert [(i.step, i.method_name, i.status) for i in invocations] == [
                (0, "run", InvocationStatus.COMPLETE), (1, "work", InvocationStatus.COMPLETE),
                (2, "work", InvocationStatus.COMPLETE), (3, "work", InvocationStatus.COMPLETE)]
            await client.log_invocation_start("outside", 1, "T", "wait", b"p", 7)
            await client.log_timer("outside", 1, datetime.now() - timedelta(seconds=1), "t")
            assert [t.flow_id for t in await client.get_expired_timers(datetime.now())] == ["outside"]
            assert await client.claim_timer("outside", 1) is True
            await client.store_suspension_result("outside", 1, "t", b"fired")
            assert await client.get_suspension_result("outside", 1, "t") == b"fired"
            assert await client.get_incomplete_flows() != []  # the timer's invocation, now pending
    run(body(), 100)
