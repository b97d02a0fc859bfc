"""Named queues across two supervisors on one store (SQLite file, Redis), workers SIGKILLed.

Every limit is checked on the journal's own event history (storage/events.py): a flow counts
as RUNNING from its `claimed` event to the event that ends its run (completed, released,
crashed, ...), which is exactly what the store counts when it claims.
"""

import os
import signal
import subprocess
import sys
from collections import defaultdict

import pytest

from ergon_actors.executor import Scheduler
from tests.helpers import read_ledger, run
from tests.runtime.conftest import ROOT
from tests.runtime.queue_flows import Limited, Ordered, PerKey, Rated
from tests.runtime.test_redis_hosts import query, stop_host, tree, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MODULE = "tests.runtime.queue_flows"
ENDS = {"completed", "failed", "cancelled", "released", "crashed", "suspended", "timer_set", "signal_waiting",
        "retry_scheduled"}
PRIORITIES = [0, 5, 0, 2, 5, 1, 0, 2]


def running_intervals(events) -> list[tuple[float, float]]:
    """The spans a flow was RUNNING in the journal: from a claim to the event ending that run
    (a claim taking over a lapsed lease continues the run)."""
    spans, start = [], None
    for event in events:
        if event.kind == "claimed" and start is None:
            start = event.at
        elif event.kind in ENDS and start is not None:
            spans.append((start, event.at))
            start = None
    assert start is None, "a flow is still RUNNING"
    return spans


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one time (a span ending when another starts does not overlap it)."""
    edges = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def most_in_a_window(times: list[float], period: float) -> int:
    times = sorted(times)
    return max((sum(1 for t in times[i:] if t < start + period - 1e-6) for i, start in enumerate(times)), default=0)


def schedule_all(url: str, ledger: str) -> dict[str, str]:
    """Schedule every flow (ordered ones first, so all of them are due when the hosts start);
    returns flow id -> queue."""
    async def body(store):
        scheduler = Scheduler(store)
        queues = {}
        for i, priority in enumerate(PRIORITIES):
            queues[await scheduler.schedule(Ordered(f"o{i}", ledger), f"o{i}", priority=priority)] = "ordered"
        for i in range(24):
            queues[await scheduler.schedule(Limited(f"l{i:02d}", ledger), f"l{i:02d}")] = "limited"
            queues[await scheduler.schedule(PerKey(f"k{i:02d}", ledger, f"c{i % 4}"), f"k{i:02d}")] = "per-key"
            queues[await scheduler.schedule(Rated(f"r{i:02d}", ledger), f"r{i:02d}")] = "rated"
        return queues
    return query(url, body)


def schedule_with_dedup(url: str, ledger: str, flow_id: str) -> str:
    """`schedule --dedup-id once`: the flow id it prints."""
    args = f'{{"key": "{flow_id}", "ledger": "{ledger}"}}'
    done = subprocess.run([sys.executable, "-m", "ergon_actors", "schedule", f"{MODULE}:Limited", "--args", args,
                           "--id", flow_id, "--dedup-id", "once", "--store", url], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def kill_a_busy_worker(ledger: str, hosts, killed: list[int]) -> None:
    """SIGKILL a worker process of the hosts that is running a step now."""
    def busy() -> int | None:
        workers = {pid for host in hosts for pid in tree(host.pid)[1:]}  # steps run only in workers
        entries = read_ledger(ledger)
        ended = {(e["key"], e["pos"], e["pid"]) for e in entries if e["event"] == "end"}
        return next((e["pid"] for e in reversed(entries) if e["event"] == "start" and e["pid"] in workers
                     and e["pid"] not in killed and (e["key"], e["pos"], e["pid"]) not in ended), None)

    pid = wait_for(busy, 60, "a worker running a step", hosts, interval=0.01)
    os.kill(pid, signal.SIGKILL)
    killed.append(pid)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_two_supervisors_hold_every_queue_limit_while_workers_are_killed(kind, request, tmp_path, cli_logged):
    url = request.getfixturevalue("own_redis").url if kind == "redis" else f"sqlite:///{tmp_path / 'store.db'}"
    ledger = str(tmp_path / "ledger")
    queues = schedule_all(url, ledger)
    first = schedule_with_dedup(url, ledger, "d1")
    again = schedule_with_dedup(url, ledger, "d2")
    assert (first, again) == ("d1", "d1")  # the live flow with that dedup id is returned
    queues["d1"] = "limited"

    env = {"ERGON_LEASE_SECONDS": "10"}
    hosts = [cli_logged("run", MODULE, "--store", url, "--workers", "2", extra_env=env, name=f"host-{i}")
             for i in range(2)]
    killed: list[int] = []
    for _ in range(2):
        kill_a_busy_worker(ledger, hosts, killed)

    async def complete(store):
        return (await store.count_flows()).get("COMPLETE", 0) == len(queues)
    wait_for(lambda: query(url, complete), 180, "every flow to complete", hosts, interval=0.2)

    async def histories(store):
        return {flow_id: await store.load_history(flow_id) for flow_id in queues}
    events = query(url, histories)
    assert query(url, lambda store: store.get_flow("d2")) is None
    spans = {flow_id: running_intervals(history) for flow_id, history in events.items()}
    crashed = [f for f, history in events.items() if any(e.kind == "crashed" for e in history)]
    assert crashed, "no worker was killed while it held a flow of a queue"

    limited = [s for f, q in queues.items() if q == "limited" for s in spans[f]]
    assert most_at_once(limited) == 3  # never more, and the queue was kept full

    by_key = defaultdict(list)
    for flow_id, queue in queues.items():
        if queue == "per-key":
            by_key[f"c{int(flow_id[1:]) % 4}"] += spans[flow_id]
    assert {key: most_at_once(s) for key, s in by_key.items()} == {f"c{i}": 1 for i in range(4)}

    claims = [e.at for f, q in queues.items() if q == "rated" for e in events[f] if e.kind == "claimed"]
    assert len(claims) >= 24 and most_in_a_window(claims, 1.0) <= 10

    first_claims = sorted((next(e.at for e in events[f] if e.kind == "claimed"), f)
                          for f, q in queues.items() if q == "ordered")
    expected = sorted((f"o{i}" for i in range(len(PRIORITIES))), key=lambda f: -PRIORITIES[int(f[1:])])
    assert [f for _, f in first_claims] == expected  # higher priority first, FIFO within

    async def stats(store):
        return {q.name: q for q in await store.queue_stats()}
    final = query(url, stats)
    assert final["limited"].limits.concurrency == 3 and final["limited"].running == 0
    assert final["rated"].limits.rate_limit == 10
    for host in hosts:
        stop_host(host)


def test_status_shows_queues_and_the_queues_setting_overrides_declared_limits(tmp_path, cli):
    """A worker declares its classes' queues with the setting's overrides; `status` shows them."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    env = {"ERGON_QUEUES": "limited:concurrency=5;rated:rate=none"}
    host = cli("run", MODULE, "--store", url, "--workers", "1", "--until-idle", extra_env=env)
    out, err = host.communicate(timeout=120)
    assert host.returncode == 0, err
    status = cli("status", "--store", url)
    out, err = status.communicate(timeout=60)
    assert status.returncode == 0, err
    assert "limited: 0 running, 0 due, 0 waiting (concurrency=5)" in out
    assert "rated: 0 running, 0 due, 0 waiting (no limits)" in out

    async def limits(store):
        return {q.name: q.limits for q in await store.queue_stats()}
    from ergon_actors.storage import open_store

    async def read():
        store = await open_store(url)
        try:
            return await limits(store)
        finally:
            await store.close()
    declared = run(read())
    assert declared["per-key"].key_concurrency == 1 and declared["ordered"].concurrency == 1
