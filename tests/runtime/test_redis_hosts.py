"""Several hosts on one Redis, and Redis itself failing: real processes, real signals.

Each test injects a fault and then checks the journal (the Redis store, read back through
`open_store(url)`) and the side-effect ledger every step writes (tests/runtime/flows.py).
A "host" is one `python -m ergon_actors run` supervisor with its journal and worker actors;
its worker ids start with "<nodename>-<supervisor pid>-", which is how the journal names it.
Every redis-server is a test's own (the `own_redis` fixture), on 127.0.0.1.
"""

import asyncio
import contextlib
import os
import re
import signal
import time

import psutil
import pytest

from ergon_actors import codec
from ergon_actors.executor import Scheduler
from ergon_actors.runtime import Supervisor
from ergon_actors.storage import open_store
from tests.helpers import (assert_gone, assert_no_step_ran_after_ack, read_ledger, run, starts,
                           wait_until, wait_until_async)
from tests.redis_server import ping
from tests.runtime.conftest import FLOWS
from tests.runtime.flows import LedgerFlow, expected

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(150)]

NODE = os.uname().nodename


# -- helpers ---------------------------------------------------------------------------------

def host_prefix(pid: int) -> str:
    """The prefix of the worker ids (lease owners) of the host whose supervisor has this pid."""
    return f"{NODE}-{pid}-"


def tree(pid: int) -> list[int]:
    """The pid and its descendants' pids (empty once it is gone)."""
    try:
        return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # died first: a child whose supervisor was just SIGKILLed
            os.kill(pid, signum)


async def _with_store(url: str, fn):
    store = await open_store(url)
    try:
        return await fn(store)
    finally:
        await store.close()


def query(url: str, fn):
    """fn(store) on a fresh connection to the Redis store, on a fresh event loop."""
    return run(_with_store(url, fn), 30)


def schedule(url: str, flows: list[LedgerFlow]) -> None:
    async def body(store):
        scheduler = Scheduler(store)
        for flow in flows:
            await scheduler.schedule(flow, flow.key)
    query(url, body)


async def _all_complete(store, n: int) -> bool:
    return (await store.count_flows()).get("COMPLETE", 0) >= n


async def _journal(store, keys: list[str]) -> tuple[dict, dict]:
    flows = {f.flow_id: f for f in await store.list_flows(limit=10_000)}
    return flows, {k: await store.load_steps(k) for k in keys}


def check_journal(url: str, keys: list[str], steps: int = 3) -> tuple[dict, dict]:
    """Every flow COMPLETE with the right result, owning no lease; each step recorded once."""
    flows, steps_of = query(url, lambda store: _journal(store, keys))
    assert sorted(flows) == sorted(keys)
    for key in keys:
        flow = flows[key]
        assert (flow.status, flow.value, flow.owner) == ("COMPLETE", expected(key, steps), None), key
        recorded = [(s.position, s.status, codec.decode(s.result)) for s in steps_of[key]]
        assert recorded == [(i, "COMPLETE", f"{key}-{i}") for i in range(steps)], key
    return flows, steps_of


def wait_for(predicate, timeout: float, what: str, hosts=(), interval: float = 0.02):
    """wait_until, and on timeout the tail of each host's log in the message."""
    try:
        return wait_until(predicate, timeout=timeout, interval=interval, what=what)
    except AssertionError as exc:
        tails = "".join(f"\n--- {h.err_path.name} (exit {h.poll()}):\n" + "\n".join(h.stderr_text().splitlines()[-15:])
                        for h in hosts)
        raise AssertionError(f"{exc}{tails}") from None


def run_host(cli_logged, url: str, name: str, env: dict, *flags: str):
    return cli_logged(*flags, "run", FLOWS, "--store", url, "--workers", "2", extra_env=env, name=name)


def stop_host(proc, timeout: float = 30.0) -> None:
    """SIGTERM: the host drains and must exit 0, leaving no actor behind."""
    actors = tree(proc.pid)[1:]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=timeout) == 0, proc.stderr_text()
    assert_gone(actors, timeout=5.0)


# -- 1. a host lost ----------------------------------------------------------------------------

def test_host_lost_its_flows_are_taken_over_by_the_other_host_after_lease_expiry(tmp_path, cli_logged, own_redis):
    ledger = str(tmp_path / "ledger")
    url = own_redis.url
    keys = [f"f{i:03d}" for i in range(100)]
    schedule(url, [LedgerFlow(k, ledger, "sleep:0.05") for k in keys])
    # Short leases; two flows per worker at once so that the work lasts a few seconds and both
    # hosts get a share of it (with the default 256, the first worker up would claim all 100).
    # A 4 s lease, renewed every 1.3 s: a host slowed by a loaded machine keeps its flows, so
    # every flow taken over below was taken over because its host died.
    env = {"ERGON_LEASE_SECONDS": "4", "ERGON_CONCURRENCY": "2"}
    victim = run_host(cli_logged, url, "host-a", env)
    survivor = run_host(cli_logged, url, "host-b", env)
    pids_of = {victim.pid: set(), survivor.pid: set()}

    def both_busy() -> bool:
        for host in pids_of:
            pids_of[host].update(tree(host))
        runners = {e["pid"] for e in read_ledger(ledger) if e["event"] == "start"}
        return all(runners & pids for pids in pids_of.values())

    wait_for(both_busy, 60, "steps running on both hosts", (victim, survivor))

    # The host is lost: its whole tree dies at once, supervisor first (so no ReleaseWorker).
    doomed = tree(victim.pid)
    assert len(doomed) == 4, doomed  # supervisor, journal, two workers
    signal_all(doomed, signal.SIGKILL)
    killed_at = time.time()
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert_gone(doomed, timeout=5.0)

    # What it held: RUNNING flows whose lease (on the Redis clock) it will never renew.
    async def orphaned(store):
        running = await store.list_flows("RUNNING", limit=10_000)
        return {f.flow_id: f.lease_expires for f in running if f.owner.startswith(host_prefix(victim.pid))}
    orphans = query(url, orphaned)
    assert orphans, "the lost host held no flow when it died"
    assert max(orphans.values()) > killed_at  # still leased: nobody took them over yet

    wait_for(lambda: query(url, lambda s: _all_complete(s, len(keys))), 90,
             "every flow to complete on the surviving host", (survivor,), interval=0.2)
    flows, _ = check_journal(url, keys)
    entries = read_ledger(ledger)
    reruns = assert_no_step_ran_after_ack(entries, keys, 3)
    assert reruns <= len(orphans)  # at most the step each lost flow was running
    survivors = pids_of[survivor.pid] | set(tree(survivor.pid))
    assert not [e for e in entries if e["pid"] in doomed and e["t"] > killed_at + 0.5]
    for flow_id, lease_expires in orphans.items():
        assert flows[flow_id].epoch >= 2  # claimed again ...
        later = [e for e in entries if e["key"] == flow_id and e["event"] == "start" and e["t"] > killed_at]
        if not later:
            # Its last step's result was acknowledged before the host died: the other host only
            # replayed the journal and completed the flow, running no step.
            assert starts(entries)[flow_id][-1] == 2 and not [
                e for e in entries if e["key"] == flow_id and e["t"] > killed_at], (flow_id, entries)
            assert flows[flow_id].updated_at >= lease_expires
            continue
        assert all(e["pid"] in survivors for e in later), (flow_id, later)
        assert later[0]["t"] >= lease_expires  # ... by the other host, once the lease had lapsed

    stop_host(survivor)


# -- 2. a paused host ------------------------------------------------------------------------

def test_sigstopped_host_is_fenced_when_it_wakes_after_another_host_took_its_flow(tmp_path, cli_logged, own_redis):
    """The whole tree of host A (supervisor, journal, workers) is SIGSTOPped, as a paused VM or a
    host frozen by the kernel would be: nothing of A runs, renews or notices until SIGCONT, and
    the late write then goes through A's own journal, whose refusal the test reads in A's log."""
    ledger = str(tmp_path / "ledger")
    url = own_redis.url
    schedule(url, [LedgerFlow("k", ledger, "late-once:1:4")])
    # hang_timeout far above the pause: no supervisor kills the paused worker for us
    env = {"ERGON_LEASE_SECONDS": "1.5", "ERGON_HANG_TIMEOUT": "60"}
    host_a = run_host(cli_logged, url, "host-a", env, "-v")  # -v: the journal logs refused writes

    def step_1_started():
        return next((e for e in read_ledger(ledger) if e["pos"] == 1 and e["event"] == "start"), None)

    first = wait_for(step_1_started, 60, "step 1 to start on host A", (host_a,))
    paused = tree(host_a.pid)
    assert len(paused) == 4 and first["pid"] in paused  # supervisor, journal, two workers
    owner = query(url, lambda s: s.get_flow("k")).owner
    assert owner.startswith(host_prefix(host_a.pid))  # the flow landed on host A

    host_b = run_host(cli_logged, url, "host-b", env, "-v")
    signal_all(paused, signal.SIGSTOP)
    try:
        wait_for(lambda: query(url, lambda s: s.get_flow("k")).status == "COMPLETE", 60,
                 "host B to take the flow over and complete it", (host_b,), interval=0.1)
        flow, recorded = query(url, lambda s: _journal(s, ["k"]))
        resumed_at = time.time()
    finally:
        signal_all(paused, signal.SIGCONT)

    # Host A wakes up, its step 1 ends, and the journal refuses to record it (stale epoch).
    refused = r"\[journal#\d+ pid=(\d+)\] [\w.]+: journal refused a write: write for flow 'k' at epoch (\d+)"
    found = wait_for(lambda: re.search(refused, host_a.stderr_text()), 30,
                     "host A's journal to refuse the late write", (host_a,))
    assert int(found.group(1)) in paused  # host A's own journal ...
    entries = read_ledger(ledger)
    late = [e for e in entries if e["pid"] == first["pid"] and e["event"] == "end" and e["pos"] == 1]
    assert len(late) == 1 and late[0]["t"] >= resumed_at  # the paused run did finish its step, late

    flows, steps_of = check_journal(url, ["k"])
    assert (flows, steps_of) == (flow, recorded)  # ... and changed nothing in the journal
    assert flows["k"].epoch > int(found.group(2))  # ... refused host A's epoch: the flow moved on
    step_1 = steps_of["k"][1]
    assert step_1.completed_at < resumed_at  # recorded before host A woke: host B's run of it
    b_pids = set(tree(host_b.pid))
    b_run = [e for e in entries if e["pos"] == 1 and e["pid"] in b_pids]
    assert [e["event"] for e in b_run] == ["start", "end"] and b_run[1]["t"] <= step_1.completed_at
    assert starts(entries)["k"] == [0, 1, 1, 2]  # step 0 once, step 1 on A then on B, step 2 once

    stop_host(host_a)
    stop_host(host_b)


# -- 3. Redis lost and back, briefly and for longer than hang_timeout ------------------------

def test_redis_sigkilled_and_restarted_mid_run_loses_no_acknowledged_write(tmp_path, own_redis, capfd, caplog):
    ledger = str(tmp_path / "ledger")
    url = own_redis.url
    keys = [f"f{i:03d}" for i in range(100)]
    schedule(url, [LedgerFlow(k, ledger, "sleep:0.02") for k in keys])

    def ledger_size() -> int:
        return len(read_ledger(ledger))

    def starts_of() -> list[dict]:
        return [e for e in read_ledger(ledger) if e["event"] == "start"]

    async def quiet(seconds: float) -> None:
        """Return once the ledger has not grown for `seconds`: every worker is stuck on the store."""
        size, since = ledger_size(), time.monotonic()
        deadline = since + 20
        while time.monotonic() - since < seconds:
            assert time.monotonic() < deadline, "steps kept running with Redis down"
            await asyncio.sleep(0.05)
            if (now := ledger_size()) != size:
                size, since = now, time.monotonic()

    async def body():
        # Two flows per worker at once, so that the run lasts long enough to be cut in the middle.
        # Leases outlive the outage (a few seconds), so no flow changes hands meanwhile.
        async with Supervisor(FLOWS, store=url, workers=2, concurrency=2, lease_seconds=15.0,
                              hang_timeout=10.0) as sup:
            await wait_until_async(lambda: asyncio.to_thread(lambda: len(starts_of()) >= 100),
                                   timeout=60, what="a third of the steps to start")
            await asyncio.to_thread(own_redis.kill)
            await wait_until_async(lambda: asyncio.to_thread(lambda: not ping(own_redis.port)), timeout=5,
                                   what="Redis to refuse connections")
            await quiet(1.0)  # the outage: in-flight steps end, then nothing moves
            stalled = ledger_size()
            assert len(starts_of()) < 300
            await asyncio.to_thread(own_redis.start)  # same port and directory: it replays its AOF
            for key in keys:
                assert await sup.result(key, timeout=90) == expected(key)
            assert ledger_size() > stalled  # the run went on after the restart
            stats = sup.snapshot()
            assert all(a.alive for a in stats.actors) and stats.restarts == 0  # rode it out, no restart

    run(body(), 130)
    check_journal(url, keys)
    # Held batches are retried until Redis answers; leases (15 s) outlive the outage, so no step
    # ran twice, and none acknowledged before the crash was lost.
    assert assert_no_step_ran_after_ack(read_ledger(ledger), keys, 3) == 0
    assert "journal commit failed; retrying" in capfd.readouterr().err  # the journal saw Redis gone
    assert "giving up" not in caplog.text and "missed heartbeats" not in caplog.text  # the supervisor's log


def test_redis_down_longer_than_hang_timeout_the_journal_waits_and_the_host_does_not_give_up(tmp_path, own_redis,
                                                                                            capfd, caplog):
    """A journal retrying a batch against a store that is down is waiting, not hung: restarting it
    cannot help (a new journal cannot even open the store), and each failed restart would count
    toward the restart intensity, so a long Redis outage would make the whole host give up."""
    ledger = str(tmp_path / "ledger")
    url = own_redis.url
    keys = [f"f{i:02d}" for i in range(20)]
    schedule(url, [LedgerFlow(k, ledger, "sleep:0.02") for k in keys])

    async def body():
        async with Supervisor(FLOWS, store=url, workers=2, concurrency=2, lease_seconds=30.0,
                              hang_timeout=3.0, max_restarts=3) as sup:
            await wait_until_async(lambda: asyncio.to_thread(lambda: len(read_ledger(ledger)) >= 10),
                                   timeout=60, what="work under way")
            journal = sup.pids()["journal"]
            await asyncio.to_thread(own_redis.kill)
            # The outage lasts two hang timeouts; all along, the journal must stay the same process.
            down_until = time.monotonic() + 6.0
            failing_since = None
            while time.monotonic() < down_until:
                assert sup.pids().get("journal") == journal, "the journal was killed while waiting for Redis"
                failing_since = failing_since or sup.snapshot().journal.store_failing_since
                await asyncio.sleep(0.1)
            assert failing_since is not None  # its heartbeats told the outage
            await asyncio.to_thread(own_redis.start)
            for key in keys:
                assert await sup.result(key, timeout=60) == expected(key)
            stats = sup.snapshot()
            assert all(a.alive for a in stats.actors) and stats.restarts == 0
            await wait_until_async(lambda: _store_ok(sup), timeout=10, what="the store to be reported back")

    run(body(), 100)
    check_journal(url, keys)
    assert assert_no_step_ran_after_ack(read_ledger(ledger), keys, 3) == 0
    assert "journal commit failed; retrying" in capfd.readouterr().err  # the journal saw Redis gone
    assert "giving up" not in caplog.text and "missed heartbeats" not in caplog.text  # the supervisor's log


async def _store_ok(sup: Supervisor) -> bool:
    return sup.snapshot().journal.store_ok
