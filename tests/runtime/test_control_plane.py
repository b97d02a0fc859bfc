"""What the supervisor shows and hides: its status snapshot, no secret on any command line, and
no environment variable that can weaken fencing."""

import json
import os
import signal
import stat

import pytest
import redis

from ergon_actors.runtime import Supervisor, rundir
from ergon_actors.runtime.messages import JournalStats, WorkerStats
from tests.helpers import read_ledger, run, starts, wait_until, wait_until_async
from tests.runtime.conftest import FLOWS
from tests.runtime.flows import LedgerFlow, expected
from tests.runtime.test_faults import _flows, _schedule

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

PASSWORD = "s3cret-Pa55word"


@pytest.mark.redis
def test_no_store_url_or_password_on_any_actor_command_line(own_redis):
    redis.Redis(port=own_redis.port).config_set("requirepass", PASSWORD)
    url = f"redis://:{PASSWORD}@127.0.0.1:{own_redis.port}/0"

    async def body():
        async with Supervisor(FLOWS, store=url, workers=2) as sup:
            pids = sup.pids()
            assert len(pids) == 3
            for name, pid in pids.items():
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().decode().rstrip("\0").split("\0")
                assert not [a for a in argv if PASSWORD in a or "redis://" in a or str(own_redis.port) in a], argv
                assert argv[-3:-1] == [next(i.role for i in sup.snapshot().actors if i.name == name), f"{name}#1"]
                spec = argv[-1]
                assert stat.S_IMODE(os.stat(spec).st_mode) == 0o600  # the spec holds the URL, for us only
            snap = sup.snapshot()
            assert stat.S_IMODE(os.stat(snap.run_dir).st_mode) == 0o700
            assert snap.store == f"redis://:***@127.0.0.1:{own_redis.port}/0"
            await wait_until_async(lambda: _written(snap.run_dir), what="the snapshot file")
            with open(os.path.join(snap.run_dir, "status.json")) as f:
                assert PASSWORD not in f.read()
            flow_id = await sup.schedule(LedgerFlow("k", os.devnull))
            assert await sup.result(flow_id, timeout=30) == expected("k")  # the actors did reach Redis

    run(body(), 90)


async def _written(run_dir: str) -> bool:
    return os.path.exists(os.path.join(run_dir, "status.json"))


def test_the_snapshot_in_process_and_on_disk(tmp_path):
    async def body():
        async with Supervisor(FLOWS, store=f"sqlite:///{tmp_path}/journal.db", workers=2) as sup:
            snap = sup.snapshot()
            assert snap.pid == os.getpid() and snap.state == "running"
            assert snap.store == f"sqlite:///{tmp_path}/journal.db"
            assert [(a.name, a.role, a.incarnation, a.ready) for a in snap.actors] == [
                ("journal", "journal", 1, True), ("worker-0", "worker", 1, True), ("worker-1", "worker", 1, True)]
            assert snap.actors[0].worker_id is None
            assert {a.name: a.worker_id for a in snap.actors[1:]} == sup.worker_ids()
            flow_id = await sup.schedule(LedgerFlow("k", os.devnull))
            await sup.result(flow_id, timeout=30)
            await wait_until_async(lambda: _beat_and_sampled(sup), what="heartbeats and a resource sample")
            snap = sup.snapshot()
            journal, worker = snap.actors[0], snap.actors[1]
            assert isinstance(journal.stats, JournalStats) and isinstance(worker.stats, WorkerStats)
            assert snap.journal.store_ok and snap.journal.commands >= snap.journal.commits
            assert journal.heartbeat_age is not None and journal.heartbeat_age < 10

            victim = sup.pids()["worker-1"]
            os.kill(victim, signal.SIGKILL)
            await wait_until_async(lambda: _restarted(sup, "worker-1", victim), what="the restart")
            snap = sup.snapshot()
            restarted = snap.actors[2]
            assert (restarted.incarnation, restarted.restarts, restarted.exit_codes) == (2, 1, (-9,))
            assert restarted.pid != victim and snap.restarts == 1
            await wait_until_async(lambda: _on_disk_shows(snap.run_dir, restarted.pid), what="the file")
            on_disk = rundir.read_snapshot(snap.run_dir)
            assert on_disk.actors[2].exit_codes == (-9,) and isinstance(on_disk.actors[0].stats, JournalStats)
            with open(os.path.join(snap.run_dir, "status.json")) as f:
                assert json.load(f)["actors"][2]["incarnation"] == 2
        assert not os.path.exists(snap.run_dir)

    run(body(), 90)


async def _beat_and_sampled(sup: Supervisor) -> bool:
    """Heartbeats sent after the flow ended, and a resource sample of every actor."""
    snap = sup.snapshot()
    finished = sum(a.stats.finished for a in snap.actors[1:] if isinstance(a.stats, WorkerStats))
    return (finished == 1 and snap.journal.commits >= 1
            and all(a.rss_bytes and a.cpu_percent is not None for a in snap.actors))


async def _restarted(sup: Supervisor, name: str, old_pid: int) -> bool:
    actor = next(a for a in sup.snapshot().actors if a.name == name)
    return actor.ready and actor.pid != old_pid


async def _on_disk_shows(run_dir: str, pid: int) -> bool:
    snap = rundir.read_snapshot(run_dir)
    return snap is not None and any(a.pid == pid for a in snap.actors)


def test_no_environment_variable_makes_run_skip_fencing(tmp_path, cli_logged):
    """The chaos verifier's broken journal used to be switched on by ERGON_FAULT_PLAN. Now no
    variable can: a paused worker's late write is refused, and it runs no further step."""
    ledger = str(tmp_path / "ledger")
    db = tmp_path / "journal.db"
    run(_schedule(db, [LedgerFlow("k", ledger, "late-once:1:4")]))
    env = {"ERGON_FAULT_PLAN": "journal:skip_fencing", "ERGON_STORE_WRAPPER": "ergon_actors.chaos.faulty:FaultyStore",
           "ERGON_SKIP_FENCING": "1", "ERGON_LEASE_SECONDS": "1", "ERGON_HANG_TIMEOUT": "60"}
    proc = cli_logged("run", FLOWS, "--store", f"sqlite:///{db}", "--workers", "2", extra_env=env)
    wait_until(lambda: 1 in starts(read_ledger(ledger)).get("k", []), timeout=30, what="step 1 to start")
    snap = wait_until(lambda: _snapshot_of(proc.pid), timeout=30, what="the supervisor's snapshot")
    owner = next(r for r in run(_flows(db)) if r.flow_id == "k").owner
    paused = next(a.pid for a in snap.actors if a.worker_id == owner)
    os.kill(paused, signal.SIGSTOP)
    try:
        wait_until(lambda: run(_flows(db))[0].status == "COMPLETE", timeout=30, what="the flow to complete")
    finally:
        os.kill(paused, signal.SIGCONT)
    wait_until(lambda: (s := _snapshot_of(proc.pid)) and s.journal.fenced >= 1, timeout=30,
               what="the late write to be refused")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, proc.stderr_text()
    assert starts(read_ledger(ledger))["k"] == [0, 1, 1, 2]  # the paused worker did not go on to step 2
    assert "deliberately broken" not in proc.stderr_text()


def _snapshot_of(pid: int):
    return next((s for s in rundir.snapshots() if s.pid == pid and s.state == "running"), None)


def test_garbage_on_the_supervisors_own_socket_changes_nothing(tmp_path):
    """Any local process can connect to the supervisor's socket: what it sends is dropped, and
    the actors' heartbeats and the flows go on."""
    import time

    import zmq

    async def body():
        async with Supervisor(FLOWS, store=f"sqlite:///{tmp_path}/journal.db", workers=2) as sup:
            ctx = zmq.Context()
            peers = []
            for identity in (b"", b"worker-0#1", b"journal#1/beat", b"\xff" * 255):
                peer = ctx.socket(zmq.DEALER)
                peer.setsockopt(zmq.LINGER, 0)
                if identity:
                    peer.setsockopt(zmq.IDENTITY, identity)
                peer.connect(sup._ctl_address)
                peers.append(peer)
            try:
                for n in range(2000):
                    peer = peers[n % len(peers)]
                    peer.send_multipart([b"", b"\x00" * (n % 7), b"\xc1garbage"][: 1 + n % 3])
                attacked = time.monotonic()

                async def beating() -> bool:  # beats sent well after the flood, not queued beside it
                    return all(a.last_seen > attacked + 3 * sup.settings.idle_beat for a in sup._actors)

                # every actor's heartbeats are still read after the flood, and work still runs
                await wait_until_async(beating, timeout=30, what="heartbeats after the garbage")
                flow_id = await sup.schedule(LedgerFlow("k", os.devnull))
                assert await sup.result(flow_id, timeout=30) == expected("k")
                assert sup.snapshot().state == "running"
            finally:
                for peer in peers:
                    peer.close()
                ctx.term()

    run(body(), 90)
