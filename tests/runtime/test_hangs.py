"""The hang checks under the default settings: a frozen actor (SIGSTOP) is killed and replaced,
its flows move on without waiting for a lease; an actor whose loop is merely busy is left alone."""

import asyncio
import os
import signal
import time

import psutil
import pytest

from ergon_actors.config import Settings
from ergon_actors.runtime import Supervisor
from tests.helpers import assert_gone, read_ledger, run, starts, wait_until, wait_until_async
from tests.runtime.conftest import FLOWS
from tests.runtime.flows import LedgerFlow, expected
from tests.runtime.test_faults import _flows, _schedule, hit_owner, started

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

DEFAULTS = Settings()


def supervisor(tmp_path, **overrides) -> Supervisor:
    # Settings() and not from_env(): the defaults under test, whatever the environment says.
    return Supervisor(FLOWS, DEFAULTS.with_(store=f"sqlite:///{tmp_path}/journal.db", **overrides))


async def replaced(sup: Supervisor, name: str, pid: int):
    """The actor `name` once a READY process other than `pid` runs it, else None."""
    info = next(a for a in sup.snapshot().actors if a.name == name)
    return info if info.ready and info.pid not in (None, pid) else None


def test_the_defaults_detect_a_frozen_actor_long_before_a_lease_lapses():
    assert DEFAULTS.hang_timeout + DEFAULTS.heartbeat_interval < 3.0 < DEFAULTS.lease_seconds
    assert DEFAULTS.loop_timeout > DEFAULTS.hang_timeout


def test_a_sigstopped_worker_is_killed_as_hung_and_its_flow_taken_over(tmp_path):
    ledger = str(tmp_path / "ledger")

    async def body():
        async with supervisor(tmp_path, workers=2) as sup:
            flow_id, frozen = await hit_owner(sup, ledger, "late-once:1:600", signal.SIGSTOP)
            owner = (await sup.client.get_flow(flow_id)).owner
            name = next(n for n, w in sup.worker_ids().items() if w == owner)
            assert await sup.result(flow_id, timeout=40) == expected("k")
            flow = await sup.client.get_flow(flow_id)  # its supervisor killed it, as hung, and released the flow
            assert [(c.cause, c.signal, c.worker_id) for c in flow.crashes] == [("hang", 9, owner)]
            rerun = [e for e in read_ledger(ledger) if e["pos"] == 1 and e["event"] == "start"]
            assert len(rerun) == 2 and rerun[1]["pid"] != frozen
            info = await wait_until_async(lambda: replaced(sup, name, frozen), what="its replacement")
            assert info.restarts == 1 and info.exit_codes == (-9,)

    run(body(), 90)


def test_a_sigstopped_journal_is_killed_and_replaced_and_flows_go_on(tmp_path):
    ledger = str(tmp_path / "ledger")

    async def body():
        async with supervisor(tmp_path, workers=2, resend_after=0.5) as sup:
            ids = [await sup.schedule(LedgerFlow(f"f{i}", ledger, "sleep:0.05", steps=6)) for i in range(6)]
            await wait_until_async(lambda: asyncio.to_thread(started, ledger, "f0", 1), what="work under way")
            frozen = sup.pids()["journal"]
            os.kill(frozen, signal.SIGSTOP)
            for i, flow_id in enumerate(ids):
                assert await sup.result(flow_id, timeout=30) == expected(f"f{i}", 6)
            info = next(a for a in sup.snapshot().actors if a.name == "journal")
            assert info.restarts == 1 and info.exit_codes == (-9,) and info.pid != frozen

    run(body(), 90)


def test_a_loop_busy_longer_than_hang_timeout_is_not_killed(tmp_path):
    """A step that holds its worker's loop for twice hang_timeout (but under loop_timeout): the
    heartbeat thread keeps beating, so the worker lives and the step runs once."""
    ledger = str(tmp_path / "ledger")
    busy = 2 * DEFAULTS.hang_timeout

    async def body():
        async with supervisor(tmp_path, workers=1) as sup:
            flow_id = await sup.schedule(LedgerFlow("k", ledger, f"stall:1:{busy}"))
            assert await sup.result(flow_id, timeout=60) == expected("k")
            assert (await sup.client.get_flow(flow_id)).crashes == ()
            assert starts(read_ledger(ledger))["k"] == [0, 1, 2]
            assert sup.snapshot().restarts == 0

    run(body(), 90)


def test_a_restarted_journal_gets_every_unanswered_request_at_once(tmp_path):
    """resend_after far beyond the test: the requests the killed journal took with it reach its
    successor because the clients send them again as they reconnect."""
    ledger = str(tmp_path / "ledger")

    async def body():
        async with supervisor(tmp_path, workers=2, resend_after=600.0) as sup:
            ids = [await sup.schedule(LedgerFlow(f"f{i}", ledger, "sleep:0.05", steps=8)) for i in range(8)]
            killed = 0
            for kill in range(3):
                enough = 20 * (kill + 1)
                await wait_until_async(lambda n=enough: asyncio.to_thread(lambda: len(read_ledger(ledger)) >= n),
                                       what="work under way")
                info = await wait_until_async(lambda k=killed: replaced(sup, "journal", k), what="a journal up")
                os.kill(info.pid, signal.SIGKILL)
                killed = info.pid
            for i, flow_id in enumerate(ids):
                assert await sup.result(flow_id, timeout=40) == expected(f"f{i}", 8)
            info = next(a for a in sup.snapshot().actors if a.name == "journal")
            assert info.restarts == 3
            resent = sum(a.stats.resent for a in sup.snapshot().actors if a.role == "worker" and a.stats)
            assert resent > 0  # some request was in flight at a kill, and went again

    run(body(), 100)


def test_after_a_killed_tree_the_next_run_takes_its_flows_at_once(tmp_path, cli, temp_dir):
    """Leases of a minute: the next `run` on this machine releases what the dead tree's workers
    held (its run directory was left behind) instead of waiting for the leases to lapse. The
    run directories are the test's own (TMPDIR): no other supervisor on the machine sees them."""
    ledger = str(tmp_path / "ledger")
    db = tmp_path / "journal.db"
    keys = [f"f{i}" for i in range(6)]
    run(_schedule(db, [LedgerFlow(k, ledger, "sleep:0.2", steps=20) for k in keys]))
    env = {"TMPDIR": temp_dir}
    first = cli("run", FLOWS, "--store", f"sqlite:///{db}", "--workers", "2", "--lease", "60s", extra_env=env)
    wait_until(lambda: len({e["key"] for e in read_ledger(ledger)}) == len(keys), timeout=30,
               what="every flow under way")
    children = [p.pid for p in psutil.Process(first.pid).children(recursive=True)]
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert_gone(children, timeout=5.0)
    held = [f for f in run(_flows(db)) if f.status == "RUNNING"]
    assert held and all(f.lease_expires - time.time() > 30 for f in held)
    second = cli("run", FLOWS, "--store", f"sqlite:///{db}", "--until-idle", "--lease", "60s", extra_env=env)
    _out, err = second.communicate(timeout=40)  # far less than the leases left
    assert second.returncode == 0, err
    assert {f.flow_id: f.status for f in run(_flows(db))} == {k: "COMPLETE" for k in keys}
