"""Poison flows under `run`: a flow whose step kills its worker (exit, segfault, memory, a blocked
event loop) is quarantined, blamed exactly, and never stops the service."""

import asyncio
import os
import signal
import time

import pytest

from ergon_actors.errors import PoisonFlowError
from ergon_actors.runtime import Supervisor
from tests.helpers import assert_no_step_ran_after_ack, read_ledger, run, starts, wait_until_async
from tests.runtime.conftest import FLOWS
from tests.runtime.flows import LedgerFlow, expected
from tests.runtime.test_faults import _flows, _schedule

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

MAX_RSS = 256 * 2**20
# How each kind of poison shows in `inspect`, and the settings it needs beyond the defaults: the
# memory poison needs a limit to be killed at; the blocked loop is caught by the loop check,
# whose default (10 s) would make its three crashes take over 30 s of the test's time.
KINDS = {
    "exit": ("exit code 1 (exit)", {}),
    "segv": ("signal 11 (SIGSEGV) (signal)", {}),
    "grow": ("signal 9 (SIGKILL) (memory)", {"ERGON_MAX_RSS": str(MAX_RSS)}),
    "block": ("signal 9 (SIGKILL) (hang)", {"ERGON_LOOP_TIMEOUT": "4"}),
}
HEALTHY = 40


@pytest.mark.parametrize("kinds, concurrency", [
    (["exit"], None), (["segv"], None), (["grow"], None), (["block"], None), (["exit", "segv"], 256),
], ids=["exit", "segv", "grow", "block", "exit+segv-concurrency-256"])
def test_poison_flows_are_quarantined_and_every_healthy_flow_completes(tmp_path, cli, kinds, concurrency):
    ledger = str(tmp_path / "ledger")
    db = tmp_path / "journal.db"
    healthy = [f"h{i:02d}" for i in range(HEALTHY)]
    flows = [LedgerFlow(k, ledger, "sleep:0.2") for k in healthy]
    for n, kind in enumerate(kinds):  # among the healthy ones, so that they share workers at first
        flows.insert(10 + 15 * n, LedgerFlow(f"poison-{kind}", ledger, f"{kind}:1"))
    run(_schedule(db, flows))
    env: dict[str, str] = {}
    for kind in kinds:
        env.update(KINDS[kind][1])
    args = ["run", FLOWS, "--store", f"sqlite:///{db}", "--until-idle"]
    if concurrency is not None:
        args += ["--concurrency", str(concurrency)]
    began = time.time()
    proc = cli(*args, extra_env=env)
    _out, err = proc.communicate(timeout=150)
    assert proc.returncode == 0, err[-3000:]

    by_id = {f.flow_id: f for f in run(_flows(db))}
    for key in healthy:
        flow = by_id[key]
        assert flow.status == "COMPLETE" and flow.blamed == 0 and not flow.quarantined, (key, flow.crashes)
    assert_no_step_ran_after_ack(read_ledger(ledger), healthy, 3)  # a step cut by a crash may run again
    for kind in kinds:
        poison = by_id[f"poison-{kind}"]
        assert poison.status == "FAILED" and poison.quarantined, (kind, poison)
        assert poison.error is not None and poison.error.type_name == PoisonFlowError.__name__
        assert poison.updated_at - began < 60, f"{kind} quarantined after {poison.updated_at - began:.0f}s"
        assert poison.blamed == 3 and all(c.position == 1 for c in poison.crashes), poison.crashes
        shown = cli("inspect", poison.flow_id, "--store", f"sqlite:///{db}")
        text, inspect_err = shown.communicate(timeout=60)
        assert shown.returncode == 0, inspect_err
        assert text.count(KINDS[kind][0]) >= 3 and "blamed" in text, text


@pytest.mark.parametrize("limit", ["max_rss", "max_flows"])
def test_a_worker_over_its_limit_is_recycled_without_losing_or_failing_a_flow(tmp_path, limit):
    ledger = str(tmp_path / "ledger")
    keys = [f"f{i:02d}" for i in range(20)]
    if limit == "max_rss":  # each flow holds 300 MB in its step 1: over max_rss, under 1.5 x max_rss
        flows = [LedgerFlow(k, ledger, "hold:1:300") for k in keys[:2]]
        overrides = {"max_rss": 300 * 2**20, "concurrency": 1}  # one such flow per worker
        keys = keys[:2]
    else:
        flows, overrides = [LedgerFlow(k, ledger, "sleep:0.1") for k in keys], {"max_flows": 4}

    async def body():
        async with Supervisor(FLOWS, store=f"sqlite:///{tmp_path}/journal.db", workers=2, **overrides) as sup:
            ids = [await sup.schedule(flow, flow.key) for flow in flows]
            for flow_id in ids:
                assert await sup.result(flow_id, timeout=60) == expected(flow_id)
            await wait_until_async(lambda: _recycled(sup), timeout=30, what="a worker recycled")
            snap = sup.snapshot()
            assert snap.crashes == 0 and snap.quarantined == 0, snap

    run(body(), 120)
    assert_no_step_ran_after_ack(read_ledger(ledger), keys, 3)
    assert all(not f.crashes for f in run(_flows(tmp_path / "journal.db")))


async def _recycled(sup: Supervisor) -> bool:
    return sup.snapshot().recycles >= 1


def test_flows_of_a_killed_worker_run_again_in_groups_not_one_at_a_time(tmp_path):
    ledger = str(tmp_path / "ledger")
    keys = [f"g{i:03d}" for i in range(120)]

    async def body():
        async with Supervisor(FLOWS, store=f"sqlite:///{tmp_path}/journal.db", workers=1, concurrency=160) as sup:
            ids = [await sup.schedule(LedgerFlow(k, ledger, "hang-once:1"), k) for k in keys]
            await wait_until_async(lambda: asyncio.to_thread(_all_started, ledger, keys, 1), timeout=60,
                                   what="every flow in step 1 on the one worker")
            os.kill(sup.pids()["worker-0"], signal.SIGKILL)
            for flow_id in ids:
                assert await sup.result(flow_id, timeout=60) == expected(flow_id)
            claims = set()
            for flow_id in ids:
                history = await sup.client.load_history(flow_id)
                crash = next(i for i, e in enumerate(history) if e.kind == "crashed")
                claims |= {e.at for e in history[crash:] if e.kind == "claimed"}
                flow = await sup.client.get_flow(flow_id)
                assert len(flow.crashes) == 1 and flow.blamed == 0 and not flow.suspect, flow
            # a quarter of 120 flows at a time: 4 claims; one at a time would be 120
            assert len(claims) <= 8, f"{len(claims)} claims ran the 120 flows again"
            assert sup.snapshot().crashes == 1

    run(body(), 150)
    assert_no_step_ran_after_ack(read_ledger(ledger), keys, 3)


def _all_started(ledger: str, keys: list[str], position: int) -> bool:
    begun = starts(read_ledger(ledger))
    return all(position in begun.get(key, []) for key in keys)
