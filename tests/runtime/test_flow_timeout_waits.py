"""A flow's @flow(timeout=...) ends it also while it is suspended on a signal or a child flow,
under the supervisor, on every store."""

import pytest

from ergon_actors import FlowTimeoutError
from ergon_actors.runtime import Supervisor
from tests.helpers import run
from tests.runtime.conftest import FLOWS
from tests.runtime.flows import TimedWait

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store_url(request, tmp_path):
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/journal.db"
    return request.getfixturevalue("own_redis").url


def test_a_suspended_flow_fails_at_its_timeout(tmp_path, store_url):
    ledger = str(tmp_path / "ledger")
    waits = {"signal": "signal:never-a", "signal-60s": "signal-60s:never-b", "child": "child"}

    async def body():
        async with Supervisor(FLOWS, store=store_url, workers=1) as sup:
            ids = {kind: await sup.schedule(TimedWait(kind, ledger, wait)) for kind, wait in waits.items()}
            for kind, flow_id in ids.items():
                flow = await sup.wait_for(flow_id, timeout=30)  # well before the 60 s signal timeout
                assert flow.status == "FAILED", (kind, flow)
                assert flow.error is not None and flow.error.type_name == FlowTimeoutError.__name__, (kind, flow.error)
            child = await sup.client.get_flow(f"{ids['child']}/1")
            assert child.status == "SUSPENDED"  # the parent's timeout is its own: the child goes on waiting

    run(body(), 80)
