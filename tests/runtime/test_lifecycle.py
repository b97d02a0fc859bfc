"""Start-up and shutdown, as a terminal and a crash do them: Ctrl-C at any moment, a child that
dies before READY, a journal lost for good, run directories of SIGKILLed supervisors."""

import asyncio
import logging
import os
import signal
import time

import psutil
import pytest

from ergon_actors.errors import BrokenActorError, RestartIntensityError
from ergon_actors.runtime import Supervisor, rundir
from tests.helpers import assert_gone, read_ledger, run, starts, wait_until, wait_until_async
from tests.runtime.conftest import FLOWS
from tests.runtime.flows import LedgerFlow
from tests.runtime.test_faults import _flows, _schedule

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

# Before `run` handles interrupts, Python does: while it imports the package a Ctrl-C kills it
# by the signal (status 130 in a shell), and while it initialises itself (its site module, its
# standard streams) it exits 1 with a fatal error naming the phase, and while `-m` imports runpy
# (before any module of ours) it exits 1 saying so.
PYTHON_STARTING = ("Fatal Python error: init_", "Could not import runpy module")


def watch_tree(proc, until: float) -> set[int]:
    """Every pid seen below `proc` until it exits (or `until`, a monotonic deadline)."""
    seen: set[int] = set()
    while proc.poll() is None and time.monotonic() < until:
        try:
            seen.update(p.pid for p in psutil.Process(proc.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.01)
    return seen


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.3, 0.8])
def test_ctrl_c_to_the_process_group_early_in_run(tmp_path, cli, delay):
    # A ready_timeout far above the deadline: a child killed by the Ctrl-C while importing
    # would make the supervisor wait for it, and the test fail.
    proc = cli("run", FLOWS, "--store", f"sqlite:///{tmp_path}/journal.db", "--workers", "2",
               extra_env={"ERGON_READY_TIMEOUT": "120"}, new_session=True)
    time.sleep(max(0.0, delay - 0.005))  # the moment under test, not a synchronisation
    os.killpg(proc.pid, signal.SIGINT)
    seen = watch_tree(proc, time.monotonic() + 30)
    out, err = proc.communicate(timeout=10)
    if proc.returncode == 0:  # the actors had started: it drained
        assert "draining" in err and "flows:" in out, err
    elif proc.returncode == 130:  # no process had started: it stopped at once
        assert "Traceback" not in err and "draining" not in err, err
    else:
        assert proc.returncode == -signal.SIGINT or (proc.returncode == 1 and any(p in err for p in PYTHON_STARTING)), \
            (proc.returncode, err)
    assert_gone(sorted(seen), timeout=2.0)


@pytest.mark.parametrize("second", ["while starting", "while draining"])
def test_a_second_ctrl_c_stops_at_once_with_exit_130(tmp_path, cli, second):
    ledger = str(tmp_path / "ledger")
    db = tmp_path / "journal.db"
    run(_schedule(db, [LedgerFlow(f"f{i}", ledger, "sleep:600") for i in range(4)]))
    proc = cli("run", FLOWS, "--store", f"sqlite:///{db}", "--workers", "2", "--grace", "600",
               extra_env={"ERGON_READY_TIMEOUT": "120"}, new_session=True)
    if second == "while starting":
        wait_until(lambda: psutil.Process(proc.pid).children(), timeout=30, what="a first actor")
    else:
        wait_until(lambda: len(starts(read_ledger(ledger))) >= 2, timeout=30, what="steps in flight")
    seen = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.1)  # two separate interrupts, as two key presses are
    os.killpg(proc.pid, signal.SIGINT)
    seen |= watch_tree(proc, time.monotonic() + 30)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert "second interrupt: stopping now" in err
    assert_gone(sorted(seen), timeout=2.0)
    if second == "while draining":  # the killed workers' flows went back to the queue
        flows = run(_flows(db))
        assert flows and not [f for f in flows if f.status == "RUNNING" or f.owner is not None]


def test_a_child_that_dies_before_ready_fails_the_start_at_once(tmp_path):
    async def body():
        sup = Supervisor("tests.runtime.dies_in_actor", store=f"sqlite:///{tmp_path}/journal.db", workers=1,
                         ready_timeout=100.0)
        with pytest.raises(BrokenActorError, match="exited with code 9 before READY") as caught:
            await asyncio.wait_for(sup.start(), 60)  # far below ready_timeout
        assert caught.value.exit_code == 9 and caught.value.actor == "worker-0#1"
        assert not sup.pids()

    run(body(), 90)


def test_an_actor_that_cannot_start_says_why(tmp_path):
    async def body():
        sup = Supervisor("tests.runtime.no_such_module", store=f"sqlite:///{tmp_path}/journal.db", workers=1,
                         ready_timeout=100.0)
        with pytest.raises(BrokenActorError, match=r"failed to start: ModuleNotFoundError: .*no_such_module") as caught:
            await asyncio.wait_for(sup.start(), 60)
        assert caught.value.exit_code == 78

    run(body(), 90)


def test_shutdown_after_losing_the_journal_kills_workers_at_once(tmp_path, caplog):
    ledger = str(tmp_path / "ledger")
    caplog.set_level(logging.INFO, logger="ergon_actors")

    async def body():
        sup = Supervisor(FLOWS, store=f"sqlite:///{tmp_path}/journal.db", workers=2, max_restarts=1,
                         restart_period=120.0, grace=600.0)
        await sup.start()
        await sup.schedule(LedgerFlow("f", ledger, "sleep:600"))
        await wait_until_async(lambda: asyncio.to_thread(lambda: len(read_ledger(ledger)) >= 1),
                               what="a step in flight")
        pids = list(sup.pids().values())
        first = sup.pids()["journal"]
        os.kill(first, signal.SIGKILL)
        await wait_until_async(lambda: _journal_ready_again(sup, first), what="the journal's restart")
        pids.append(sup.pids()["journal"])
        os.kill(sup.pids()["journal"], signal.SIGKILL)
        with pytest.raises(RestartIntensityError, match=r"journal 2 times \(exit codes: -9, -9\)"):
            await asyncio.wait_for(sup.wait_closed(), 6.0)  # not drained: nothing could be journaled
        assert_gone(pids, timeout=2.0)

    run(body(), 60)
    assert "the journal is down: stopping workers at once" in caplog.text
    assert "could not release flows" not in caplog.text
    assert "shutdown ()" not in caplog.text


async def _journal_ready_again(sup: Supervisor, old_pid: int) -> bool:
    journal = next(a for a in sup.snapshot().actors if a.role == "journal")
    return journal.pid != old_pid and journal.ready


def run_dir_of(pid: int, base: str) -> str | None:
    return next((path for path in rundir.live(base)
                 if (snap := rundir.read_snapshot(path)) is not None and snap.pid == pid), None)


def test_run_directories_of_killed_supervisors_go_at_the_next_start(tmp_path, cli_logged, cli, temp_dir):
    store = f"sqlite:///{tmp_path}/journal.db"
    env = {"TMPDIR": temp_dir}
    killed = cli_logged("run", FLOWS, "--store", store, "--workers", "1", extra_env=env, name="killed")
    live = cli_logged("run", FLOWS, "--store", store, "--workers", "1", extra_env=env, name="live")
    killed_dir = wait_until(lambda: run_dir_of(killed.pid, temp_dir), timeout=60, what="the first run dir")
    live_dir = wait_until(lambda: run_dir_of(live.pid, temp_dir), timeout=60, what="the second run dir")
    children = [p.pid for p in psutil.Process(killed.pid).children(recursive=True)]
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=10)
    assert_gone(children, timeout=5.0)  # parent-death SIGKILL; seconds for a loaded machine
    assert os.path.isdir(killed_dir)  # nobody could remove it yet

    status = cli("status", "--store", store, extra_env=env)
    out, err = status.communicate(timeout=60)
    assert status.returncode == 0, err
    assert f"pid {live.pid} on" in out and f"pid {killed.pid} on" not in out
    assert "worker-0" in out and "journal" in out
    assert os.path.isdir(killed_dir)  # status only reads

    again = cli("run", FLOWS, "--store", store, "--until-idle", extra_env=env)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert not os.path.exists(killed_dir)
    assert os.path.isdir(live_dir)  # its supervisor runs: never touched
    live.send_signal(signal.SIGTERM)
    assert live.wait(timeout=30) == 0
    assert not os.path.exists(live_dir)  # removed by its own shutdown

