"""chaos_run: run flows under a real supervisor while faults hit it, then verify everything.

The chaos process owns the store (a temporary SQLite file unless told otherwise), schedules the
flows into it, and runs the supervisor under test as a child process (ergon_actors.chaos.supervise:
`python -m ergon_actors run` plus the test-only fault plan); its journal and workers are the
actors the faults hit. Meanwhile the same flows run fault-free in this process (an in-process
Worker on an in-memory store) to give the results every flow must end with; the poison flows a
module declares are left out there, and must end quarantined here with no other flow blamed.
The harness marks its own kills (chaos.marks), so they are never blamed on a flow.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from ..decorators import definition_of, encode_args
from ..errors import ConfigError
from ..runtime.worker import discover_flows
from ..storage import LogBase, check_store_url, open_store
from ..storage.commands import ScheduleFlow
from .faults import FAULTS, HOST_FAULTS, LEASE, Harness, fault_schedule
from .hosts import Hosts
from .storefaults import DiskFull
from .faulty import parse_plan
from .ledger import LEDGER_ENV, read_ledger
from .procs import RedisServer, SupervisorProcess
from .blame import check_blame
from .reference import ALL, histories, observe, reference_run
from .report import ChaosProgress, ChaosReport, RecoveryStats, Violation
from .stimuli import Sender, declared
from .verify import HistoryOrder, recovery_samples, verify

__all__ = ["chaos_run", "load_flows", "default_duration", "FACTORY"]

FACTORY = "chaos_flows"  # MODULE.chaos_flows(n, seed) -> list of flow instances
GRACE = 5.0              # the supervisor's drain at the end of the run


def default_duration(flows: int) -> float:
    """The fault phase when none is given: about 0.45 s per flow, between 10 and 90 seconds."""
    return min(90.0, max(10.0, 0.45 * flows))


def load_flows(module: str, n: int, seed: int, schedule: str | None = None) -> list[object]:
    """The flow instances a factory builds: `schedule` ("MODULE:function") or MODULE.chaos_flows.

    Raises:
        ConfigError: no such factory, or it did not return a list of flow instances.
    """
    target = schedule or f"{module}:{FACTORY}"
    module_name, sep, name = target.partition(":")
    if not sep or not module_name or not name:
        raise ConfigError(f"--schedule {target!r}: write MODULE:function")
    factory = getattr(importlib.import_module(module_name), name, None)
    if not callable(factory):
        raise ConfigError(f"module {module_name!r} has no function {name!r}: define "
                          f"{name}(n: int, seed: int) -> list of flow instances, or name one with --schedule")
    flows = list(factory(n, seed))
    if not flows:
        raise ConfigError(f"{target}({n}, {seed}) returned no flows")
    return flows


async def chaos_run(module: str, flows: int | Sequence[object] = 50, *, schedule: str | None = None,
                    workers: int = 2, store: str | None = None, duration: float | None = None,
                    faults: Sequence[str] | None = None, seed: int = 0, fault_plan: str = "",
                    progress: Callable[[ChaosProgress], None] | None = None, keep: bool = False,
                    settle_timeout: float = 60.0, hosts: int = 1) -> ChaosReport:
    """Run flows under a supervisor while faults hit it, and verify the journal and the ledger.

    Args:
        module: the module whose @flow_type classes the supervisor serves.
        flows: flow instances, or how many to build with the factory (`schedule`, else
            MODULE.chaos_flows(n, seed)). The factory's module (else `module`) may declare
            chaos_signals(flows) and chaos_cancels(flows): the run sends and cancels them; and
            chaos_poison(flows): flows whose step kills its worker, which must end quarantined.
        schedule: "MODULE:function", a factory called as function(n, seed).
        workers: worker processes (of each host).
        store: None (a temporary SQLite file), "redis" (a redis-server started and killed by the
            run), or a store URL (sqlite:///..., redis://host:port/db; kill-redis is skipped).
        duration: seconds of faults (default: about 0.45 s per flow, 10 to 90 s). Flows are
            released over the first 80% of it, so faults meet flows at every stage.
        faults: kinds to inject (default: all the store allows): kill-worker, stop-worker,
            kill-journal, kill-supervisor, kill-redis and stall-redis (on a Redis of its own),
            disk-full (on its own SQLite file, when it can mount a tmpfs: as root), stop-journal,
            kill-host and stop-host (with hosts >= 2).
        seed: seeds the fault schedule and the release times; the same seed replays them.
        fault_plan: test only: break the journal's store on purpose ("journal:skip_fencing",
            "journal:ack_before_commit=N"; see chaos.faulty) to see the verifier catch it.
        progress: called about twice a second with a ChaosProgress.
        keep: keep the work directory (store, ledger, logs) even when nothing was violated.
        settle_timeout: seconds the flows get to finish after the fault phase.
        hosts: independent supervisor trees on the one store, as on as many machines; with 2
            or more, kill-host and stop-host hit whole trees.

    Returns:
        A ChaosReport; `report.ok` is False when a promise was broken (`report.violations`).

    Raises:
        ConfigError: bad arguments (unknown fault, store, factory).
        ChaosError: the run could not be carried out (a process would not start, the fault-free
            run did not finish).
    """
    started = time.monotonic()
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if hosts < 1:
        raise ConfigError(f"hosts must be >= 1, got {hosts}")
    n_hosts = hosts
    parse_plan(fault_plan)
    instances = load_flows(module, flows, seed, schedule) if isinstance(flows, int) else list(flows)
    if not instances:
        raise ConfigError("no flows to run")
    stimuli = declared(schedule.partition(":")[0] if schedule else module, instances)
    modules = _served_modules(module, instances)
    classes = discover_flows(modules)
    duration = default_duration(len(instances)) if duration is None else float(duration)
    if store not in (None, "redis") and check_store_url(store) == "memory":
        raise ConfigError("a memory:// store lives inside the journal process; use sqlite or redis")
    notes: list[str] = []
    kinds = _kinds(faults, store == "redis", store or "sqlite:", n_hosts, notes)
    if store == "redis":
        RedisServer.find()
    work = Path(tempfile.mkdtemp(prefix="ergon-chaos-"))
    disk, kinds = _mount_disk(work, kinds, notes)
    redis: RedisServer | None = None
    if store is None:
        url = f"sqlite:///{(disk.path if disk is not None else work) / 'journal.db'}"
    elif store == "redis":
        redis = RedisServer(work / "redis")
        url = redis.url
    else:
        url = store
    ledger_path = str(work / "ledger.jsonl")
    tag = uuid.uuid4().hex[:6]
    ids = [f"chaos-{seed}-{tag}-{i:04d}" for i in range(len(instances))]
    poison = {ids[i] for i in stimuli.poison}
    trees = Hosts([SupervisorProcess(modules, url, workers, _child_env(ledger_path), _host_dir(work, i, n_hosts),
                                     GRACE, fault_plan) for i in range(n_hosts)])
    reference = asyncio.get_running_loop().create_task(
        reference_run(instances, ids, classes, stimuli, settle_timeout))
    handle = None
    harness = None
    stop_watching, faults_over = asyncio.Event(), asyncio.Event()
    watcher = sending = None
    try:
        if redis is not None:
            redis.start()  # in the main thread, so that it dies with this process
        handle = await open_store(url)
        harness = Harness(trees, workers, redis, handle, ids, ledger_path, progress, disk)
        await harness.start_supervisors()
        await harness.wait_ready()  # flows are released once every host serves, faults meet them at every stage
        await _schedule(handle, instances, ids, seed, 0.8 * duration)
        watcher = asyncio.get_running_loop().create_task(harness.watch(stop_watching))
        sender = Sender(handle, stimuli, ids, seed, 0.8 * duration, lambda: len(harness.faults))
        sending = asyncio.get_running_loop().create_task(sender.run(stop_watching, faults_over))
        await harness.run_schedule(fault_schedule(kinds, seed, duration), duration)
        fault_phase = time.monotonic() - harness.started
        faults_over.set()
        await harness.restore()
        deadline = time.monotonic() + settle_timeout
        while not harness.all_done and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        harness.phase = "verifying"
        stop_watching.set()
        await asyncio.gather(watcher, sending)
        await harness.tick()
        await harness.stop(GRACE)
        expected = await reference
        observed = await observe(handle, expected)
        commits = HistoryOrder(await histories(handle, expected))
        records = [f for f in await handle.list_flows(limit=ALL) if f.flow_id in expected or f.flow_id in poison]
    finally:
        stop_watching.set()
        for task in (watcher, sending):
            if task is not None and not task.done():
                task.cancel()
        if harness is not None:
            harness.cancel_restarts()
            harness.resume_all()
        for sup in trees.sups:
            if sup.running:
                await sup.kill_tree()
        if handle is not None:
            await handle.close()
        if redis is not None:
            redis.kill()
        if disk is not None:
            disk.unmount(keep=work)  # the store is copied out first, for a report that keeps it
        if not reference.done():
            reference.cancel()
            await asyncio.gather(reference, return_exceptions=True)
    entries = read_ledger(ledger_path)
    refused = trees.refused()
    verdict = verify(expected, observed, entries, sent=sender.sent, commits=commits)
    blamed: list[Violation] = []
    quarantined = check_blame(records, poison, lambda *v: blamed.append(Violation(*v)))
    samples = recovery_samples(((f.record.kind, f.wall, f.affected, f.victims) for f in harness.faults), entries)
    violations = tuple(harness.violations) + verdict.violations + tuple(blamed)
    verified = {**verdict.verified, **({"quarantined flow": quarantined} if quarantined else {})}
    notes += harness.notes + harness.store_notes()
    if verdict.unrecorded_steps:
        notes.append("steps that never called ledger.record() (not checked against the ledger): "
                     + ", ".join(verdict.unrecorded_steps))
    if not entries:
        notes.append("the ledger is empty: no step calls ledger.record(), so only the journal was checked")
    statuses: dict[str, int] = {}
    ended = [s.status for s in (observed.get(flow_id) for flow_id in ids) if s is not None]
    for status in ended + [f.status for f in records if f.flow_id in poison]:
        statuses[status] = statuses.get(status, 0) + 1
    kept = bool(violations) or keep
    if not kept:
        shutil.rmtree(work, ignore_errors=True)
    return ChaosReport(
        module=module, store=_describe(store, url), seed=seed, workers=workers, hosts=n_hosts,
        duration=round(fault_phase, 2), elapsed=round(time.monotonic() - started, 2), flows=len(ids),
        statuses=statuses, faults=tuple(f.record for f in harness.faults), step_runs=verdict.step_runs,
        steps_journaled=verdict.steps_journaled, re_executed=verdict.re_executed,
        stale_runs=verdict.stale_runs, fenced=sum(refused), fenced_by_host=tuple(refused) if n_hosts > 1 else (),
        recovery=RecoveryStats.of([t for kind in samples.values() for t in kind]),
        supervisors=harness.supervisors, violations=violations,
        recovery_by_kind={kind: RecoveryStats.of(found) for kind, found in samples.items()},
        verified=verified, signals=len(sender.sent), signals_after_fault=sender.after_fault,
        cancels=sender.cancelled, notes=tuple(notes), work_dir=str(work) if kept else None)


def _describe(store: str | None, url: str) -> str:
    if store is None:
        return "sqlite (temporary file)"
    return f"redis (its own redis-server at {url})" if store == "redis" else store


def _served_modules(module: str, flows: list[object]) -> list[str]:
    served = [module]
    for flow in flows:
        definition_of(type(flow))  # FlowDefinitionError for anything that is not a flow
        name = type(flow).__module__
        if name == "__main__":
            raise ConfigError(f"{type(flow).__name__} is defined in __main__: worker processes cannot "
                              "import it; put the flows in a module")
        if name not in served:
            served.append(name)
    return served


def _kinds(faults: Sequence[str] | None, own_redis: bool, url: str, hosts: int,
           notes: list[str]) -> tuple[str, ...]:
    redis = url.startswith(("redis://", "rediss://", "redis"))
    wanted = list(FAULTS if faults is None else faults)
    unknown = [k for k in wanted if k not in FAULTS]
    if unknown:
        raise ConfigError(f"unknown fault {unknown[0]!r}; choose from {', '.join(FAULTS)}")
    for kind in ("kill-redis", "stall-redis"):
        if kind in wanted and not own_redis:
            wanted.remove(kind)
            if faults is not None or redis:
                notes.append(f"{kind} skipped: " + ("the run uses your Redis, which it will not touch; "
                                                    "pass --store redis to let it start its own"
                                                    if redis else "the store is not Redis"))
    for kind in HOST_FAULTS:
        if kind in wanted and hosts < 2:
            wanted.remove(kind)
            if faults is not None:
                notes.append(f"{kind} skipped: it needs --hosts 2 or more (the other host takes the flows over)")
    if "disk-full" in wanted and url != "sqlite:":
        wanted.remove("disk-full")
        if faults is not None:
            notes.append("disk-full skipped: only a run on its own SQLite file (no --store) fills its disk")
    return tuple(wanted)


def _host_dir(work: Path, host: int, hosts: int) -> Path:
    """Where a host's supervisor logs: the work directory, or a folder of its own per host."""
    if hosts == 1:
        return work
    path = work / f"host-{host}"
    path.mkdir(exist_ok=True)
    return path


def _mount_disk(work: Path, kinds: tuple[str, ...], notes: list[str]) -> tuple[DiskFull | None, tuple[str, ...]]:
    """The tmpfs that holds the SQLite file when disk-full is planned; left out, with a note, if
    it cannot be mounted."""
    if "disk-full" not in kinds:
        return None, kinds
    disk = DiskFull(work / "disk")
    reason = disk.mount()
    if reason is None:
        return disk, kinds
    notes.append(f"disk-full skipped: {reason}")
    return None, tuple(k for k in kinds if k != "disk-full")


def _child_env(ledger_path: str) -> dict[str, str]:
    """The supervisor's environment: the module importable, the ledger on, chaos-ready settings."""
    env = {k: v for k, v in os.environ.items() if k != "ERGON_STORE"}
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    paths = [os.getcwd()] + [p for p in sys.path if p and os.path.isdir(p)
                             and not any(p.startswith(x) for x in prefixes)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update({
        LEDGER_ENV: ledger_path,
        "ERGON_LEASE_SECONDS": str(LEASE),              # a frozen host loses its flows quickly
        "ERGON_RESEND_AFTER": "0.5",                     # a restarted journal gets requests soon
        "ERGON_MAX_RESTARTS": "1000000",                 # chaos kills far more than any policy allows
        "ERGON_RESTART_PERIOD": "1",
        "ERGON_READY_TIMEOUT": "10",
    })
    return env


async def _schedule(store: LogBase, flows: list[object], ids: list[str], seed: int, spread: float) -> None:
    """Queue every flow in one transaction, released at seeded times over `spread` seconds."""
    rng = random.Random(f"{seed}:flows")
    offsets = sorted(rng.uniform(0.0, spread) for _ in flows)
    offsets[0] = 0.0
    now = time.time()
    commands = [ScheduleFlow(flow_id, definition_of(type(flow)).name, encode_args(flow), None, now + offset)
                for flow, flow_id, offset in zip(flows, ids, offsets, strict=True)]
    for result in await store.execute(commands):
        if isinstance(result, BaseException):
            raise result
