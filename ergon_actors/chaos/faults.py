"""The fault schedule and the harness that injects it into the supervisors under test (one per
host, all on one store), watching as it goes.

The schedule is drawn from `random.Random(seed)` before the run starts: which fault, how long
after the previous one, which victim among the candidates (workers holding RUNNING flows
first, on any host), how long a stopped worker, a frozen host, a stalled store stays so. The
same seed gives the same schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from ..storage.base import LogBase
from .ledger import LedgerReader
from .hosts import Hosts
from .marks import KillMarks
from .procs import Actor, RedisServer, still_alive
from .report import ChaosProgress, FaultRecord, Violation
from .storefaults import DiskFull, disk_notes, hold_store
from .verify import ORPHAN

__all__ = ["FAULTS", "STORE_FAULTS", "HOST_FAULTS", "LEASE", "PAUSE", "Plan", "fault_schedule", "Harness"]

log = logging.getLogger(__name__)

FAULTS = ("kill-worker", "stop-worker", "kill-journal", "stop-journal", "kill-supervisor", "kill-redis",
          "stall-redis", "disk-full", "kill-host", "stop-host")
STORE_FAULTS = ("stall-redis", "disk-full")  # the store stops answering, then comes back
HOST_FAULTS = ("kill-host", "stop-host")      # a whole supervisor tree: runs with --hosts 2 or more
LEASE = 2.5            # the lease under test: longer than a journal restart, so only stops lapse it
PAUSE = (3.0, 4.0)     # a stopped worker (a stalled store, a full disk) stays so this long: past its lease
INTERVAL = (0.4, 1.0)  # seconds between two faults
TARGET_WAIT = 15.0     # how long a fault waits for its target to be up (a restart in progress)
BUSY_WAIT = 2.0        # how long a worker fault waits for a worker holding flows, else hits an idle one
ORPHAN_WAIT = 2.0      # a supervisor's children must be gone this long after it died
HIT_TRIES = 5          # choices of a victim that died before the signal, before a fault is skipped
RESUMED = 3.0          # a resumed worker's mark is taken back this long after its SIGCONT


@dataclass(frozen=True, slots=True)
class Plan:
    """One scheduled fault."""

    kind: str
    wait: float   # seconds after the previous fault
    pick: float   # in [0, 1): chooses the victim among the candidates
    pause: float  # stop-*, stall-redis, disk-full: seconds it lasts; kill-host: seconds until the restart


def fault_schedule(kinds: tuple[str, ...], seed: int, duration: float) -> list[Plan]:
    """Faults for `duration` seconds: rounds in which every kind comes once, in a random order."""
    rng = random.Random(f"{seed}:faults")
    plans: list[Plan] = []
    total = 0.0
    while kinds and total < duration:
        for kind in rng.sample(kinds, len(kinds)):
            wait = rng.uniform(*INTERVAL)
            total += wait
            plans.append(Plan(kind, wait, rng.random(), rng.uniform(*PAUSE)))
    return plans


@dataclass(slots=True)
class _Fault:
    record: FaultRecord
    wall: float               # time.time() when injected
    affected: frozenset[str]
    victims: frozenset[int]   # pids hit: steps they start later are no recovery
    recovered: bool = False
    store_failed: bool = False  # a store fault: the journal was seen waiting out its store


class Harness:
    """Injects faults into the supervisors under test and keeps an eye on them meanwhile."""

    def __init__(self, hosts: Hosts, workers: int, redis: RedisServer | None, store: LogBase,
                 flow_ids: list[str], ledger_path: str,
                 progress: Callable[[ChaosProgress], None] | None, disk: DiskFull | None = None) -> None:
        self.hosts = hosts
        self.disk = disk
        self.workers = workers
        self.redis = redis
        self.store = store
        self.flow_ids = set(flow_ids)
        self.reader = LedgerReader(ledger_path)
        self.progress = progress
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.faults: list[_Fault] = []
        self.violations: list[Violation] = []
        self.notes: list[str] = []
        self.done = 0
        self.statuses: dict[str, int] = {}
        self.phase = "faults"
        self.supervisors = 0
        self._seen: dict[int, psutil.Process] = {}
        self._stopped: dict[int, tuple[int, Actor, asyncio.Task[None]]] = {}  # pid -> host, actor, its resume
        self._held: list[tuple[Callable[[], None], asyncio.Task[None]]] = []  # faults to undo at the end
        self._restarts: list[asyncio.Task[None]] = []  # hosts killed whole, each restarted after its pause
        self._store_fault: _Fault | None = None  # the store fault under way
        self._lifecycle = asyncio.Lock()

    # -- the supervisors -------------------------------------------------------------------

    async def start_supervisors(self) -> None:
        for host in range(len(self.hosts)):
            await self._start(host)

    async def _start(self, host: int) -> None:
        await self.hosts.sups[host].start()
        self.hosts.down.discard(host)
        self.supervisors += 1

    async def _restart_if_dead(self) -> None:
        async with self._lifecycle:
            for host, sup in enumerate(self.hosts.sups):
                if sup.running or sup.proc is None or sup.expected_exit:
                    continue
                self.notes.append(f"the supervisor of {self.hosts.name(host)} exited by itself with code "
                                  f"{sup.proc.returncode} (log: {sup.log_path}); started a new one")
                self._forget_stopped(host)
                await self._check_orphans(list(self._seen.values()), "the supervisor that exited")
                await self._start(host)

    async def _check_orphans(self, procs: list[psutil.Process], whose: str) -> None:
        alive = await asyncio.to_thread(still_alive, procs, ORPHAN_WAIT)
        for p in alive:
            try:
                what = " ".join(p.cmdline()[2:5])
            except psutil.Error:
                what = "?"
            self.violations.append(Violation(ORPHAN, None, None, f"pid {p.pid} ({what}) still ran "
                                              f"{ORPHAN_WAIT:g}s after {whose} died"))
            with contextlib.suppress(psutil.Error):
                p.kill()

    async def stop(self, grace: float) -> None:
        """End the run: resume what is stopped, stop every supervisor, check nothing outlived them."""
        self.resume_all()
        async with self._lifecycle:
            for sup in self.hosts.sups:
                self._watch(await sup.stop(grace + 10.0))
        await self._check_orphans(list(self._seen.values()), "the last supervisor")

    async def wait_ready(self) -> None:
        """Wait (up to TARGET_WAIT) until every host has started its whole pool."""
        deadline = time.monotonic() + TARGET_WAIT
        while (any(len(sup.actors()) < self.workers + 1 for sup in self.hosts.sups)
               and time.monotonic() < deadline):
            await asyncio.sleep(0.05)
        self.started, self.started_wall = time.monotonic(), time.time()  # the fault phase starts now

    async def restore(self) -> None:
        """Let every fault under way run its course (a stop its pause, a killed host until its
        restart), so that the last ones are whole too and every host takes part in the settling."""
        waits = [task for _, _, task in self._stopped.values()] + [task for _, task in self._held] + self._restarts
        await asyncio.gather(*waits, return_exceptions=True)
        self._restarts.clear()
        self.resume_all()

    def cancel_restarts(self) -> None:
        for task in self._restarts:
            task.cancel()

    def resume_all(self) -> None:
        """SIGCONT every stopped actor and frozen host; undo the store faults under way."""
        for _, actor, task in self._stopped.values():
            task.cancel()
            actor.signal(signal.SIGCONT)
        self._stopped.clear()
        for undo, task in self._held:
            task.cancel()
            undo()
        self._held.clear()
        self._store_fault = None
        self.hosts.thaw_all()

    def _forget_stopped(self, host: int) -> None:
        for pid, (where, _, task) in list(self._stopped.items()):
            if where == host:
                task.cancel()
                del self._stopped[pid]

    def _watch(self, procs: list[psutil.Process]) -> None:
        for p in procs:
            self._seen.setdefault(p.pid, p)

    # -- watching --------------------------------------------------------------------------

    async def tick(self) -> None:
        """Restart a dead supervisor, count finished flows, note recoveries, report progress."""
        await self._restart_if_dead()
        for host in self.hosts.live():
            sup = self.hosts.sups[host]
            self._watch(sup.descendants())
            snap = sup.observe()
            if self._store_fault is not None and snap is not None and not snap.journal.store_ok:
                self._store_fault.store_failed = True
        try:
            flows = await self.store.list_flows(limit=len(self.flow_ids) + 100_000)
        except Exception as exc:  # the store may be down (kill-redis): try again next tick
            log.debug("chaos could not read the store: %s", exc)
        else:
            mine = [f for f in flows if f.flow_id in self.flow_ids]
            self.statuses = {}
            for f in mine:
                self.statuses[f.status] = self.statuses.get(f.status, 0) + 1
            self.done = sum(1 for f in mine if f.status in ("COMPLETE", "FAILED", "CANCELLED"))
        waiting = [f for f in self.faults if not f.recovered]
        for entry in self.reader.poll():
            for fault in waiting:
                if entry.flow_id in fault.affected and entry.t > fault.wall and entry.pid not in fault.victims:
                    fault.recovered = True
        if self.progress is not None:
            kinds: dict[str, int] = {}
            for fault in self.faults:
                kinds[fault.record.kind] = kinds.get(fault.record.kind, 0) + 1
            self.progress(ChaosProgress(time.monotonic() - self.started, self.phase, self.done,
                                        len(self.flow_ids), len(self.faults),
                                        sum(f.recovered for f in self.faults), kinds))

    async def watch(self, stop: asyncio.Event, every: float = 0.5) -> None:
        while not stop.is_set():
            await self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    @property
    def all_done(self) -> bool:
        return self.done >= len(self.flow_ids)

    # -- faults ----------------------------------------------------------------------------

    async def run_schedule(self, plans: list[Plan], duration: float) -> None:
        """Inject the planned faults until `duration` seconds have passed or every flow ended;
        the first round (every kind once) is always injected whole, however slow it is."""
        t0 = time.monotonic()
        due = t0
        first_round = len({plan.kind for plan in plans})
        for n, plan in enumerate(plans):
            due += plan.wait
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if n >= first_round and (time.monotonic() - t0 >= duration or self.all_done):
                break
            await self.inject(plan)
            due = max(due, time.monotonic() - INTERVAL[0])  # a slow injection delays the rest
        self.phase = "settling"

    async def inject(self, plan: Plan) -> None:
        if plan.kind in ("kill-supervisor", *HOST_FAULTS):
            await self._hit_host(plan)
        elif plan.kind == "kill-redis":
            await self._kill_redis()
        elif plan.kind in STORE_FAULTS:
            await self._hold_store(plan)
        else:
            await self._hit_actor(plan)

    async def _running(self) -> dict[str, str | None]:
        """Our RUNNING flows and their owners (empty if the store cannot be read right now)."""
        try:
            flows = await self.store.list_flows("RUNNING", limit=len(self.flow_ids) + 100_000)
        except Exception:
            return {}
        return {f.flow_id: f.owner for f in flows if f.flow_id in self.flow_ids}

    async def _candidates(self, kind: str, role: str) -> list[tuple[int, Actor]]:
        """Live, READY, not stopped actors of the role on live hosts; a stop leaves another worker
        running (else nobody could take the stopped worker's flows over), unless there is only one."""
        deadline = time.monotonic() + TARGET_WAIT
        least = 2 if kind == "stop-worker" and self.workers * len(self.hosts) > 1 else 1
        while True:
            found = [(host, a) for host in self.hosts.live() for a in self.hosts.sups[host].actors()
                     if a.role == role and a.pid not in self._stopped]
            if len(found) >= least:
                return found
            if time.monotonic() > deadline:
                return []
            await asyncio.sleep(0.05)

    async def _hit_actor(self, plan: Plan) -> None:
        """Hit an actor of the plan's role; one that dies before the signal (a poison flow's
        worker, a journal restarting) is replaced by another choice, a few times at most."""
        role = "journal" if plan.kind.endswith("-journal") else "worker"
        for _ in range(HIT_TRIES):
            if await self._try_hit_actor(plan, role):
                return
            await asyncio.sleep(0.2)  # its supervisor sees the death and starts another
        self.notes.append(f"{plan.kind} at {self._now():.1f}s skipped: each {role} chosen died before "
                          f"the signal ({HIT_TRIES} tries)")

    async def _try_hit_actor(self, plan: Plan, role: str) -> bool:
        """False when the chosen actor was gone by the time of the signal."""
        candidates = await self._candidates(plan.kind, role)
        if not candidates:
            self.notes.append(f"{plan.kind} at {self._now():.1f}s skipped: no {role} to hit was up "
                              f"within {TARGET_WAIT:g}s")
            return True
        running = await self._running()
        deadline = time.monotonic() + BUSY_WAIT
        while (role == "worker" and not {a.worker_id for _, a in candidates} & set(running.values())
               and time.monotonic() < deadline and not self.all_done):
            await asyncio.sleep(0.05)
            running = await self._running()
        owners = set(running.values())
        pool = [(h, a) for h, a in candidates if a.worker_id in owners] or candidates
        host, victim = pool[int(plan.pick * len(pool))]
        affected = frozenset(f for f, owner in running.items()
                             if role == "journal" or owner == victim.worker_id)  # a journal: every flow
        wall = time.time()
        marks = self.hosts.sups[host].marks
        if role == "worker":  # a stopped worker is killed as hung: either way, the harness's doing
            marks.mark(victim.pid)
        stop = plan.kind.startswith("stop-")
        if not victim.signal(signal.SIGSTOP if stop else signal.SIGKILL):
            marks.unmark(victim.pid)
            return False
        note = ""
        if stop:
            self._stopped[victim.pid] = (host, victim, asyncio.get_running_loop().create_task(
                self._resume_later(victim, plan.pause, marks)))
            note = f"stopped {plan.pause:.1f}s"
        where = f"{self.hosts.name(host)} " if len(self.hosts) > 1 else ""
        self._record(plan.kind, f"{where}{victim.name} (pid {victim.pid})", wall, affected, {victim.pid}, note)
        return True

    async def _resume_later(self, actor: Actor, pause: float, marks: KillMarks) -> None:
        await asyncio.sleep(pause)
        self._stopped.pop(actor.pid, None)
        actor.signal(signal.SIGCONT)
        await asyncio.sleep(RESUMED)  # its heartbeats are back: a later death is no longer ours
        marks.unmark(actor.pid)

    async def _hit_host(self, plan: Plan) -> None:
        """kill-supervisor (its actors die with it), kill-host (every process at once, restarted
        after the pause) or stop-host (every process frozen for the pause, then thawed)."""
        host = await self._pick_host(plan)
        if host is None:
            self.notes.append(f"{plan.kind} at {self._now():.1f}s skipped: no host was up within {TARGET_WAIT:g}s")
            return
        sup, name = self.hosts.sups[host], self.hosts.name(host)
        async with self._lifecycle:
            running = await self._running()
            pid, wall = sup.pid, time.time()
            workers = {a.worker_id for a in sup.actors() if a.worker_id}
            affected = frozenset(f for f, owner in running.items() if owner in workers or len(self.hosts) == 1)
            if plan.kind == "stop-host":  # frozen a whole lease longer than a stop: the other host takes over
                procs = [p for p in [sup.handle, *sup.descendants()] if p is not None]
                count = self.hosts.freeze(host)
                pause = plan.pause + LEASE
                self._held.append((lambda: self.hosts.thaw(host), asyncio.get_running_loop().create_task(
                    self._undo_later(lambda: self.hosts.thaw(host), pause))))
                self._record(plan.kind, f"{name} (supervisor pid {pid}, {count} processes)", wall, affected,
                             {p.pid for p in procs}, f"frozen {pause:.1f}s")
                return
            before = await (sup.kill_tree() if plan.kind == "kill-host" else sup.kill())
            self._watch(before)
            self._forget_stopped(host)  # a stopped worker died with its supervisor
            await self._check_orphans(before, f"the supervisor of {name} (pid {pid})")
            if plan.kind == "kill-supervisor":
                await self._start(host)
            else:
                self.hosts.down.add(host)
                self._restarts.append(asyncio.get_running_loop().create_task(self._restart_later(host, plan.pause)))
        what = "every process" if plan.kind == "kill-host" else "its supervisor"
        self._record(plan.kind, f"{name} ({what}: pid {pid} and {len(before)} children)", wall, affected,
                     {p.pid for p in before}, f"restarted after {plan.pause:.1f}s" if plan.kind == "kill-host" else "")

    async def _pick_host(self, plan: Plan) -> int | None:
        """A live host whose actors all run, one holding RUNNING flows if one does within
        BUSY_WAIT; chosen by plan.pick. A whole host is hit only while another one runs (to take
        its flows over)."""
        deadline = time.monotonic() + TARGET_WAIT
        busy_until = time.monotonic() + BUSY_WAIT
        least = 2 if plan.kind in HOST_FAULTS else 1
        while True:
            ready = [h for h in self.hosts.live() if len(self.hosts.sups[h].actors()) >= self.workers + 1]
            ready = ready if len(ready) >= least else []
            owners = set((await self._running()).values()) if ready else set()
            busy = [h for h in ready if {a.worker_id for a in self.hosts.sups[h].actors()} & owners]
            if busy or (ready and (time.monotonic() > busy_until or self.all_done)):
                pool = busy or ready
                return pool[int(plan.pick * len(pool))]
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)

    async def _restart_later(self, host: int, pause: float) -> None:
        await asyncio.sleep(pause)
        async with self._lifecycle:
            await self._start(host)

    async def _kill_redis(self) -> None:
        redis = self.redis
        assert redis is not None  # planned only when the harness runs its own Redis
        running = await self._running()
        wall = time.time()
        pid = redis.pid
        redis.kill()
        redis.start()  # in the main thread, so that it dies with this process
        self._record("kill-redis", f"redis-server (pid {pid})", wall, frozenset(running), set(), "restarted")

    async def _hold_store(self, plan: Plan) -> None:
        """Stall redis-server (SIGSTOP) or fill the store's disk for `plan.pause` seconds."""
        running = await self._running()
        wall = time.time()
        target, note, undo = await hold_store(plan.kind, plan.pause, self.redis, self.disk)
        self._store_fault = self._record(plan.kind, target, wall, frozenset(running), set(), note)
        self._held.append((undo, asyncio.get_running_loop().create_task(self._undo_later(undo, plan.pause))))

    async def _undo_later(self, undo: Callable[[], None], pause: float) -> None:
        await asyncio.sleep(pause)
        undo()
        self._held = [h for h in self._held if h[0] is not undo]
        self._store_fault = None

    def store_notes(self) -> list[str]:
        """For each disk-full fault: whether the journal was seen waiting out its store meanwhile."""
        return disk_notes((f.record, f.store_failed) for f in self.faults)

    def _record(self, kind: str, target: str, wall: float, affected: frozenset[str], victims: set[int],
                note: str) -> _Fault:
        record = FaultRecord(kind, round(wall - self.started_wall, 3), target, len(affected), note)
        fault = _Fault(record, wall, affected, frozenset(victims))
        self.faults.append(fault)
        log.info("chaos: %s on %s (%d flows running on it)", kind, target, len(affected))
        return fault

    def _now(self) -> float:
        return time.monotonic() - self.started
