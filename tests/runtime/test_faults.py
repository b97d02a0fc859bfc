"""Real processes, real signals: each test injects a fault and checks the journal and the ledger."""

import asyncio
import os
import re
import signal
import socket
import time

import msgpack
import psutil
import pytest
import zmq

from ergon_actors import SqliteExecutionLog
from ergon_actors.executor import Scheduler
from ergon_actors.runtime import Supervisor, rundir
from tests.helpers import (assert_gone, assert_no_step_ran_after_ack, read_ledger, run, starts,
                           wait_until, wait_until_async)
from tests.runtime.conftest import FLOWS
from tests.runtime.flows import LedgerFlow, expected

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def supervisor(tmp_path, **overrides) -> Supervisor:
    return Supervisor(FLOWS, store=f"sqlite:///{tmp_path}/journal.db", **overrides)


def started(ledger: str, key: str, position: int) -> bool:
    return position in starts(read_ledger(ledger)).get(key, [])


async def owner_pid(sup: Supervisor, flow_id: str) -> int:
    owner = (await sup.client.get_flow(flow_id)).owner
    name = {worker_id: name for name, worker_id in sup.worker_ids().items()}[owner]
    return sup.pids()[name]


async def hit_owner(sup: Supervisor, ledger: str, mode: str, signum: int) -> tuple[str, int]:
    """Schedule flow "k" in `mode`, and once its step 1 started send `signum` to the worker
    running it; returns the flow_id and that worker's pid."""
    flow_id = await sup.schedule(LedgerFlow("k", ledger, mode))
    await wait_until_async(lambda: asyncio.to_thread(started, ledger, "k", 1), what="step 1 to start")
    pid = await owner_pid(sup, flow_id)
    os.kill(pid, signum)
    return flow_id, pid


def test_sigkill_worker_mid_step_resumes_on_another_worker(tmp_path):
    ledger = str(tmp_path / "ledger")

    async def body():
        async with supervisor(tmp_path, workers=2) as sup:
            flow_id, victim = await hit_owner(sup, ledger, "hang-once:1", signal.SIGKILL)
            assert await sup.result(flow_id, timeout=30) == expected("k")
            steps = await sup.client.load_steps(flow_id)
            assert [(s.position, s.status) for s in steps] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
            entries = read_ledger(ledger)
            assert starts(entries)["k"] == [0, 1, 1, 2]  # step 0 not again, step 1 again
            rerun = [e for e in entries if e["pos"] == 1 and e["event"] == "start"][1]
            assert rerun["pid"] != victim
            assert sup.snapshot().restarts == 1

    run(body(), 90)


def test_sigstopped_worker_is_fenced_after_its_lease_lapses(tmp_path):
    ledger = str(tmp_path / "ledger")

    async def body():
        # hang_timeout above the lease: the supervisor must not kill the paused worker for us
        async with supervisor(tmp_path, workers=2, lease_seconds=1.0, hang_timeout=60.0) as sup:
            flow_id, paused = await hit_owner(sup, ledger, "late-once:1:4", signal.SIGSTOP)
            try:
                assert await sup.result(flow_id, timeout=30) == expected("k")
                recorded = await sup.client.load_steps(flow_id)
                epoch = (await sup.client.get_flow(flow_id)).epoch
            finally:
                os.kill(paused, signal.SIGCONT)
            await wait_until_async(lambda: _fenced(sup), timeout=20, what="the late write to be refused")
            late = [e for e in read_ledger(ledger) if e["pid"] == paused and e["event"] == "end" and e["pos"] == 1]
            assert len(late) == 1  # the paused run did finish its step, late
            assert await sup.client.load_steps(flow_id) == recorded  # ... and changed nothing
            assert epoch >= 2
            assert starts(read_ledger(ledger))["k"] == [0, 1, 1, 2]

    run(body(), 90)


async def _fenced(sup: Supervisor) -> bool:
    return sup.snapshot().journal.fenced >= 1


def test_sigkill_journal_under_load_loses_no_acknowledged_write(tmp_path):
    ledger = str(tmp_path / "ledger")
    keys = [f"f{i}" for i in range(200)]

    async def body():
        async with supervisor(tmp_path, workers=2, resend_after=0.5) as sup:
            ids = [await sup.schedule(LedgerFlow(k, ledger, "sleep:0.02"), k) for k in keys]
            await wait_until_async(lambda: asyncio.to_thread(lambda: len(read_ledger(ledger)) >= 150),
                                   what="work under way")
            journal = sup.pids()["journal"]
            os.kill(journal, signal.SIGKILL)
            for key, flow_id in zip(keys, ids, strict=True):
                assert await sup.result(flow_id, timeout=60) == expected(key)
            assert sup.pids()["journal"] != journal
            assert next(a for a in sup.snapshot().actors if a.role == "journal").restarts == 1
            for flow_id in ids:
                assert [s.position for s in await sup.client.load_steps(flow_id)] == [0, 1, 2]
        assert_no_step_ran_after_ack(read_ledger(ledger), keys, 3)

    run(body(), 110)


def test_sigkill_supervisor_leaves_no_orphans_and_a_new_run_resumes(tmp_path, cli):
    ledger = str(tmp_path / "ledger")
    db = tmp_path / "journal.db"
    keys = [f"f{i}" for i in range(20)]
    run(_schedule(db, [LedgerFlow(k, ledger, "sleep:0.1", steps=5) for k in keys]))
    first = cli("run", FLOWS, "--store", f"sqlite:///{db}", "--workers", "2")
    wait_until(lambda: len(read_ledger(ledger)) >= 10, timeout=30, what="work under way")
    children = [p.pid for p in psutil.Process(first.pid).children(recursive=True)]
    assert len(children) == 3
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert_gone(children, timeout=2.0)
    second = cli("run", FLOWS, "--store", f"sqlite:///{db}", "--until-idle")
    _out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    flows = run(_flows(db))
    assert {f.flow_id: (f.status, f.value) for f in flows} == {k: ("COMPLETE", expected(k, 5)) for k in keys}
    assert_no_step_ran_after_ack(read_ledger(ledger), keys, 5)


def test_garbage_to_the_journal_socket_is_dropped(tmp_path):
    ledger = str(tmp_path / "ledger")

    async def body():
        async with supervisor(tmp_path, workers=1) as sup:
            journal = sup.pids()["journal"]
            ctx = zmq.Context()
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(sup.journal_address)
            try:
                sock.send(b"\x00\xffnot msgpack at all")
                sock.send(os.urandom(2048))
                sock.send(msgpack.packb([99, "req", []]))            # another protocol version
                sock.send(msgpack.packb([1, "hello", None]))          # unknown kind
                sock.send_multipart([b"two", b"frames"])
                sock.send(msgpack.packb([1, "req", [[7, "not a command"]]]))
                assert sock.poll(10_000), "no answer to a request that is not a command"
                reply = msgpack.unpackb(sock.recv(), strict_map_key=False)
                assert reply[1] == "rep" and reply[2][0][0] == 7
            finally:
                sock.close()
                ctx.term()
            raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            raw.connect(sup.journal_address.removeprefix("ipc://"))
            raw.sendall(os.urandom(4096))
            raw.close()
            ids = [await sup.schedule(LedgerFlow(f"f{i}", ledger)) for i in range(20)]
            for i, flow_id in enumerate(ids):
                assert await sup.result(flow_id, timeout=30) == expected(f"f{i}")
            assert sup.pids()["journal"] == journal
            await wait_until_async(lambda: _malformed(sup, 5), what="malformed messages counted")

    run(body(), 60)


async def _malformed(sup: Supervisor, n: int) -> bool:
    return sup.snapshot().journal.malformed >= n


def test_restart_intensity_exceeded_exits_non_zero_naming_the_actor(tmp_path, cli):
    """Deaths of workers holding no flow count toward the restart intensity (those of workers
    holding flows are the flows' doing: tests/runtime/test_poison.py)."""
    db = tmp_path / "journal.db"
    run(_schedule(db, []))
    proc = cli("run", FLOWS, "--store", f"sqlite:///{db}", "--workers", "2",
               extra_env={"ERGON_MAX_RESTARTS": "3", "ERGON_RESTART_PERIOD": "60"})
    seen: set[int] = set()
    killed: set[int] = set()
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            break
        seen.update(p.pid for p in children)
        ready = [a.pid for s in rundir.snapshots() if s.pid == proc.pid for a in s.actors
                 if a.role == "worker" and a.ready and a.pid not in killed]
        for pid in ready[:1]:  # ready and idle: its death is nobody's fault but its own
            killed.add(pid)
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "restarted 4 times within 60s" in err and "exit codes: -9" in err
    error = next(line for line in err.splitlines() if line.startswith("error: "))
    named = re.findall(r"(worker-\d+) (\d+) times? \(exit codes: ([-\d, ]+)\)", error)
    assert sum(int(n) for _, n, _ in named) == 4, error  # every restart of the window, by actor
    assert all(len(codes.split(", ")) == int(n) for _, n, codes in named), error
    assert_gone(sorted(seen), timeout=2.0)


def test_sigterm_drains_in_flight_steps_and_releases_every_flow(tmp_path, cli):
    ledger = str(tmp_path / "ledger")
    db = tmp_path / "journal.db"
    keys = [f"f{i}" for i in range(10)]
    run(_schedule(db, [LedgerFlow(k, ledger, "sleep:0.5") for k in keys]))
    proc = cli("run", FLOWS, "--store", f"sqlite:///{db}", "--workers", "2", "--grace", "10")
    wait_until(lambda: len(starts(read_ledger(ledger))) >= 5, timeout=30, what="steps in flight")
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    entries = read_ledger(ledger)
    begun = [(e["key"], e["pos"]) for e in entries if e["event"] == "start"]
    ended = [(e["key"], e["pos"]) for e in entries if e["event"] == "end"]
    assert begun and sorted(begun) == sorted(ended)  # no step was cut off
    flows = run(_flows(db))
    assert not [f for f in flows if f.status == "RUNNING" or f.owner is not None]
    again = cli("run", FLOWS, "--store", f"sqlite:///{db}", "--until-idle")
    _out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert all(f.status == "COMPLETE" for f in run(_flows(db)))
    assert assert_no_step_ran_after_ack(read_ledger(ledger), keys, 3) == 0


async def _schedule(db, flows: list[LedgerFlow]) -> None:
    store = await SqliteExecutionLog(db).connect()
    try:
        for flow in flows:
            await Scheduler(store).schedule(flow, flow.key)
    finally:
        await store.close()


async def _flows(db) -> list:
    store = await SqliteExecutionLog(db).connect()
    try:
        return await store.list_flows()
    finally:
        await store.close()
