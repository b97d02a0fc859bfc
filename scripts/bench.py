"""ergon_actors benchmark: throughput, latency, recovery, memory, and alternatives, in one table.

Run from the repository root:

    python scripts/bench.py                  # everything (a few minutes on 2 cores)
    python scripts/bench.py --quick          # small sizes, a smoke test (< 30 s without alternatives)
    python scripts/bench.py --only throughput,latency --json

Sections (--only takes a comma-separated subset):
  throughput    N flows of K no-op steps through the supervisor (W workers) at synchronous FULL
                and NORMAL, the same steps in flows of 10 and 30 steps at FULL (steps/s), and
                in one process (executor Worker on SqliteExecutionLog, on its connection thread
                and inline=True).
  latency       M flows one at a time through the supervisor at FULL: durable step latency
                (gaps between consecutive steps' completed_at in the journal) and end-to-end,
                beside the floors measured in the same run (a raw sqlite3 commit at FULL, a
                ZeroMQ round trip between two Python processes); and the step latency of M
                flows one at a time in one process, at FULL and NORMAL, on both stores as above.

The header prints the load average and a fixed pure-Python calibration rate: compare runs by them.
  recovery      R times: SIGKILL the worker running a flow's step; time until the step's re-run
                starts on another worker.
  memory        max RSS of each actor during the FULL throughput run, and the journal's RSS
                while 100,000 flows of a type no worker serves sit queued; the CPU an idle
                supervisor with its actors uses over 10 s, and the median of 21 empty claims,
                before and with those flows queued.
  alternatives  the throughput workload on PyErgon and DBOS (scripts/bench_alternatives.py, each
                in a subprocess with a timeout). They must be importable by --alt-python
                (default: $ERGON_BENCH_ALT_PYTHON, else this interpreter); e.g.
                `pip install -e '.[bench]'`, or a separate venv: PyErgon pins aiosqlite==0.21.0
                and redis<6.5.

Targets are printed beside the numbers; nothing is adjusted to meet them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCRIPTS)  # the supervisor hands sys.path to its children: they import bench_flows

import psutil  # noqa: E402

import bench_flows  # noqa: E402
from ergon_actors import SqliteExecutionLog, Worker  # noqa: E402
from ergon_actors.core import TERMINAL  # noqa: E402
from ergon_actors.decorators import definition_of, encode_args  # noqa: E402
from ergon_actors.runtime.supervisor import Supervisor  # noqa: E402
from ergon_actors.storage.commands import ScheduleFlow  # noqa: E402

SECTIONS = ("throughput", "latency", "recovery", "memory", "alternatives")
ALTERNATIVES = ("pyergon", "pyergon-shared", "dbos")
CHUNK = 500
MB = 1024 * 1024


# -- helpers -----------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def noop_commands(prefix: str, start: int, stop: int, steps: int) -> list[ScheduleFlow]:
    name, args = definition_of(bench_flows.Noop).name, encode_args(bench_flows.Noop(steps))
    return [ScheduleFlow(f"{prefix}-{i}", name, args) for i in range(start, stop)]


async def schedule_noops(log, prefix: str, n: int, steps: int) -> None:
    for start in range(0, n, CHUNK):
        results = await log.execute(noop_commands(prefix, start, min(n, start + CHUNK), steps))
        bad = [r for r in results if isinstance(r, BaseException)]
        if bad:
            raise bad[0]


async def wait_complete(log, n: int, timeout: float) -> None:
    """Wait until no flow is live, then check that n completed.

    Each poll counts with limit=1 (a few index probes): a full count walks the whole table, and
    polled every few milliseconds it took half of the journal's time in a 20,000-flow run.
    """
    deadline = time.monotonic() + timeout
    while True:
        counts = await log.count_flows(limit=1)
        if counts.get("FAILED", 0):
            raise RuntimeError(f"flows failed: {await log.count_flows()}")
        if not any(counts.get(s, 0) for s in ("PENDING", "RUNNING", "SUSPENDED")):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"not complete after {timeout:.0f}s: {await log.count_flows()}")
        await asyncio.sleep(0.01)
    counts = await log.count_flows()
    if counts.get("COMPLETE", 0) < n:
        raise RuntimeError(f"only {counts.get('COMPLETE', 0)} of {n} flows completed: {counts}")


def cpu_seconds(p: psutil.Process) -> float:
    times = p.cpu_times()
    return times.user + times.system


def supervisor(db: str, a, *, synchronous: str = "FULL", **extra) -> Supervisor:
    store = db if "://" in db else f"sqlite:///{db}"
    return Supervisor("bench_flows", store=store, workers=a.workers,
                      concurrency=a.concurrency, synchronous=synchronous, metrics_port=a.metrics_port, **extra)


async def scrape_metrics(sup: Supervisor, stop: asyncio.Event) -> None:
    """GET /metrics once a second until stop is set, as a Prometheus would (more often than its 15 s)."""
    while sup.metrics_url is not None and not stop.is_set():
        reader, writer = await asyncio.open_connection(sup.settings.metrics_host, sup.settings.metrics_port)
        writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
        await reader.read()
        writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def sample_rss(sup: Supervisor, peaks: dict[str, int], stop: asyncio.Event) -> None:
    """Keep the max RSS of each actor (by name) until stop is set; every 0.2 s."""
    while True:
        for name, pid in sup.pids().items():  # read here: the snapshot samples only per heartbeat
            with contextlib.suppress(psutil.Error):
                peaks[name] = max(peaks.get(name, 0), psutil.Process(pid).memory_info().rss)
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


def timeout_for(n: int, steps: int) -> float:
    return 60.0 + n * max(steps, 1) / 100.0


# -- throughput --------------------------------------------------------------------------------

async def throughput_supervisor(tmp: str, a, synchronous: str, store: str | None = None,
                                redis_pid: int | None = None) -> dict:
    os.makedirs(tmp, exist_ok=True)
    db = store or os.path.join(tmp, f"throughput-{synchronous}.db")
    peaks: dict[str, int] = {}
    async with supervisor(db, a, synchronous=synchronous) as sup:
        beat = sup.settings.heartbeat_interval + 0.1  # the journal's figures arrive by heartbeat
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(sup, peaks, stop))
        scraper = asyncio.create_task(scrape_metrics(sup, stop))
        await asyncio.sleep(beat)
        before = sup.snapshot().journal
        procs = [(x.role, psutil.Process(x.pid)) for x in sup.snapshot().actors] + [("supervisor", psutil.Process())]
        procs += [("redis", psutil.Process(pid)) for pid in [redis_pid] if pid is not None]
        cpu0 = [cpu_seconds(p) for _, p in procs]
        t0 = time.perf_counter()
        await schedule_noops(sup.client, "tp", a.flows, a.steps)
        await wait_complete(sup.client, a.flows, timeout_for(a.flows, a.steps))
        seconds = time.perf_counter() - t0
        cpu = {}  # CPU per flow by role, in us (the supervisor: this process, which also schedules and polls)
        for (role, p), start in zip(procs, cpu0, strict=True):
            cpu[role] = cpu.get(role, 0.0) + (cpu_seconds(p) - start) * 1e6 / a.flows
        stop.set()
        await sampler
        await scraper
        await asyncio.sleep(beat)
        after = sup.snapshot().journal
        roles = {x.name: x.role for x in sup.snapshot().actors}
    commits = after.commits - before.commits
    commands = after.commands - before.commands
    label = "Redis (AOF, appendfsync always)" if store else synchronous
    return {"case": f"supervisor W={a.workers} {label}", "seconds": seconds,
            "flows_per_s": a.flows / seconds, "steps_per_s": a.flows * a.steps / seconds,
            "journal_commits": commits, "commands_per_commit": commands / commits if commits else None,
            "largest_commit": after.largest, "cpu_us_per_flow": cpu,
            "journal_busy": cpu["journal"] * a.flows / 1e6 / seconds,
            "rss_max": {name: peaks[name] for name in sorted(peaks)}, "roles": roles}


async def throughput_inprocess(tmp: str, a, synchronous: str, inline: bool = False) -> dict:
    db = os.path.join(tmp, f"inprocess-{synchronous}{'-inline' if inline else ''}.db")
    store = await SqliteExecutionLog(db, synchronous=synchronous, inline=inline).connect()
    try:
        worker = Worker(store, "inprocess", concurrency=a.concurrency)
        await worker.register(bench_flows.Noop)
        handle = await worker.start()
        try:
            t0 = time.perf_counter()
            await schedule_noops(store, "ip", a.flows, a.steps)
            await wait_complete(store, a.flows, timeout_for(a.flows, a.steps))
            seconds = time.perf_counter() - t0
        finally:
            await handle.shutdown(grace=5.0)
    finally:
        await store.close()
    return {"case": f"in-process {synchronous}{', inline store' if inline else ''}", "seconds": seconds,
            "flows_per_s": a.flows / seconds,
            "steps_per_s": a.flows * a.steps / seconds}


async def throughput_redis(tmp: str, a) -> dict:
    """The supervisor on a redis-server of its own (AOF, appendfsync always) on loopback."""
    if shutil.which("redis-server") is None:
        return {"case": f"supervisor W={a.workers} Redis", "skipped": "redis-server not found"}
    from ergon_actors.testing import RedisServer  # a free loopback port, AOF appendfsync always
    directory = os.path.join(tmp, "redis")
    os.makedirs(directory)
    server = RedisServer(Path(directory)).start()
    try:
        return await throughput_supervisor(tmp, a, "FULL", store=server.url, redis_pid=server.pid)
    finally:
        server.stop()


async def section_throughput(tmp: str, a) -> list[dict]:
    runs = []
    for synchronous in ("FULL", "NORMAL"):
        runs.append(await throughput_supervisor(tmp, a, synchronous))
    for steps in (10, 30):  # the same number of steps in longer flows: steps/s must not fall
        longer = argparse.Namespace(**{**vars(a), "steps": steps, "flows": max(1, a.flows * a.steps // steps)})
        run = await throughput_supervisor(os.path.join(tmp, f"steps{steps}"), longer, "FULL")
        run["case"] += f", {steps} steps/flow"
        runs.append(run)
    runs.append(await throughput_redis(tmp, a))
    for synchronous in ("FULL", "NORMAL"):
        for inline in (False, True):  # the store's connection thread, or commits on the loop (inline=True)
            runs.append(await throughput_inprocess(tmp, a, synchronous, inline))
    return runs


# -- latency -----------------------------------------------------------------------------------

def zmq_round_trip_us(n: int = 2000) -> float:
    """Median of n request-reply round trips over ipc:// to an echo server in another Python process."""
    import zmq
    address = f"ipc://{tempfile.mkdtemp()}/echo.sock"
    echo = ("import sys, zmq\ns = zmq.Context().socket(zmq.REP); s.bind(sys.argv[1])\n"
            "while True: s.send(s.recv())")
    server = subprocess.Popen([sys.executable, "-c", echo, address])
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(address)
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            sock.send(b"x" * 100)
            sock.recv()
            samples.append((time.perf_counter() - t0) * 1e6)
        return pct(samples, 50)
    finally:
        sock.close()
        ctx.term()
        server.kill()
        server.wait()


def floors(tmp: str) -> dict:
    """The floors the step latency is compared with, measured now: a raw sqlite3 INSERT+COMMIT
    at FULL (WAL) on the same disk, and a ZeroMQ round trip between two Python processes."""
    import bench_overhead
    commit = bench_overhead.sqlite_commit_us(os.path.join(tmp, "floor.db"), "FULL", 500)
    return {"commit_full_us": commit, "zmq_rtt_us": zmq_round_trip_us()}


async def inprocess_step_us(tmp: str, a, synchronous: str, inline: bool = False) -> float:
    """Step p50 of flows run one at a time in one process (executor Worker on SqliteExecutionLog)."""
    name = f"latency-inprocess-{synchronous}{'-inline' if inline else ''}.db"
    store = await SqliteExecutionLog(os.path.join(tmp, name), synchronous=synchronous, inline=inline).connect()
    gaps: list[float] = []
    try:
        worker = Worker(store, "latency", concurrency=a.concurrency)
        await worker.register(bench_flows.Noop)
        handle = await worker.start()
        try:
            for i in range(-5, a.latency_flows):  # 5 warm-up flows, not counted
                (command,) = noop_commands(f"lat-{synchronous}", i + 5, i + 6, a.steps)
                await store.execute([command])
                while (await store.get_flow(command.flow_id)).status not in TERMINAL:
                    await asyncio.sleep(0.001)
                if i >= 0:
                    done = [s.completed_at for s in await store.load_steps(command.flow_id)]
                    gaps.extend((b - a_) * 1e6 for a_, b in pairwise(done))
        finally:
            await handle.shutdown(grace=5.0)
    finally:
        await store.close()
    return pct(gaps, 50)


async def section_latency(tmp: str, a) -> dict:
    db = os.path.join(tmp, "latency.db")
    steps_us, flows_ms = [], []
    floor = floors(tmp)
    inprocess = {f"inprocess{'_inline' if inline else ''}_{s.lower()}_step_p50_us":
                 await inprocess_step_us(tmp, a, s, inline) for s in ("FULL", "NORMAL") for inline in (False, True)}
    async with supervisor(db, a, synchronous="FULL") as sup:
        for i in range(-5, a.latency_flows):  # 5 warm-up flows, not counted
            (command,) = noop_commands("lat", i + 5, i + 6, a.steps)
            t0 = time.perf_counter()
            await sup.client.execute([command])
            while True:
                record = await sup.client.get_flow(command.flow_id)
                if record.status in TERMINAL:
                    break
                await asyncio.sleep(0.001)
            elapsed = time.perf_counter() - t0
            if record.status != "COMPLETE":
                raise RuntimeError(f"latency flow {command.flow_id} ended {record.status}")
            if i < 0:
                continue
            flows_ms.append(elapsed * 1000)
            done = [s.completed_at for s in await sup.client.load_steps(command.flow_id)]
            steps_us.extend((b - a_) * 1e6 for a_, b in pairwise(done))
    return {"flows": a.latency_flows, "step_samples": len(steps_us),
            "step_p50_us": pct(steps_us, 50) if steps_us else None,
            "step_p99_us": pct(steps_us, 99) if steps_us else None,
            "flow_p50_ms": pct(flows_ms, 50), "flow_p99_ms": pct(flows_ms, 99), **floor, **inprocess}


# -- recovery ----------------------------------------------------------------------------------

def all_ready(sup: Supervisor) -> bool:
    return all(actor.ready for actor in sup.snapshot().actors)


async def wait_path(path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{os.path.basename(path)} did not appear within {timeout:.0f}s")
        await asyncio.sleep(0.001)


async def section_recovery(tmp: str, a) -> dict:
    db = os.path.join(tmp, "recovery.db")
    marks = os.path.join(tmp, "marks")
    os.makedirs(marks)
    name = definition_of(bench_flows.Blocker).name
    gaps_ms = []
    async with supervisor(db, a, synchronous="FULL", max_restarts=100) as sup:
        for r in range(a.kills):
            deadline = time.monotonic() + 30
            while not all_ready(sup):
                if time.monotonic() > deadline:
                    raise TimeoutError("workers not all READY 30 s after a kill")
                await asyncio.sleep(0.01)
            key = f"rec-{r}"
            await sup.client.execute([ScheduleFlow(key, name, encode_args(bench_flows.Blocker(key, marks)))])
            await wait_path(os.path.join(marks, f"{key}.started"), 30)
            record = await sup.client.get_flow(key)
            actor = {wid: n for n, wid in sup.worker_ids().items()}[record.owner]
            pid = sup.pids()[actor]
            t0 = time.time()
            os.kill(pid, signal.SIGKILL)
            resumed = os.path.join(marks, f"{key}.resumed")
            await wait_path(resumed, 30)
            with open(resumed) as f:
                gaps_ms.append((float(f.read()) - t0) * 1000)
            await sup.wait_for(key, timeout=30)
        restarts = sup.snapshot().restarts
    return {"kills": a.kills, "restarts": restarts, "p50_ms": pct(gaps_ms, 50), "p99_ms": pct(gaps_ms, 99),
            "max_ms": max(gaps_ms), "all_ms": [round(g, 1) for g in gaps_ms]}


# -- memory: a queue nobody serves -------------------------------------------------------------

async def section_queue_memory(tmp: str, a) -> dict:
    db = os.path.join(tmp, "queued.db")
    args = encode_args(bench_flows.Noop(a.steps))
    async with supervisor(db, a, synchronous="FULL") as sup:
        journal = next(x for x in sup.snapshot().actors if x.role == "journal")
        proc = psutil.Process(journal.pid)
        # the supervisor is this process: it does nothing else while the actors idle
        everyone = [psutil.Process(x.pid) for x in sup.snapshot().actors] + [psutil.Process()]

        async def probe() -> tuple[float, float]:
            claims = []
            for _ in range(21):  # the median: one claim on a busy machine says little
                t = time.perf_counter()
                await sup.client.claim("bench-probe", 1, 1.0, flow_types=("NoSuchType",))
                claims.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await sup.client.count_flows()
            return statistics.median(claims), (time.perf_counter() - t) * 1000

        async def idle_cpu(seconds: float = 10.0) -> tuple[float, float]:
            """% of a core the journal, and the supervisor with all its actors, used over `seconds`."""
            before = [cpu_seconds(p) for p in everyone]
            await asyncio.sleep(seconds)
            deltas = [cpu_seconds(p) - b for p, b in zip(everyone, before, strict=True)]
            return 100 * deltas[0] / seconds, 100 * sum(deltas) / seconds

        await asyncio.sleep(3.0)  # the workers' idle backoff reaches its ceiling
        rss_before = proc.memory_info().rss
        cpu_before, all_before = await idle_cpu()
        claim_before, count_before = await probe()
        peak = rss_before
        t0 = time.perf_counter()
        for start in range(0, a.queued, 1000):
            commands = [ScheduleFlow(f"q-{i}", "Unserved", args) for i in range(start, min(a.queued, start + 1000))]
            await sup.client.execute(commands)
            peak = max(peak, proc.memory_info().rss)
        schedule_s = time.perf_counter() - t0
        rss_scheduled = proc.memory_info().rss
        await asyncio.sleep(3.0)
        cpu_after, all_after = await idle_cpu()
        peak = max(peak, proc.memory_info().rss)
        claim_after, count_after = await probe()
        rss_after = proc.memory_info().rss
        counts = await sup.client.count_flows()
    return {"queued": a.queued, "pending": counts.get("PENDING"), "schedule_s": schedule_s,
            "rss_before": rss_before, "rss_peak": peak, "rss_scheduled": rss_scheduled, "rss_after": rss_after,
            "journal_idle_cpu_pct_before": cpu_before, "journal_idle_cpu_pct_after": cpu_after,
            "idle_cpu_pct_before": all_before, "idle_cpu_pct_after": all_after, "idle_load": os.getloadavg()[0],
            "empty_claim_ms_before": claim_before, "empty_claim_ms_after": claim_after,
            "count_flows_ms_before": count_before, "count_flows_ms_after": count_after}


# -- alternatives ------------------------------------------------------------------------------

def run_alternative(name: str, tmp: str, a) -> dict:
    work = os.path.join(tmp, f"alt-{name}")
    os.makedirs(work)
    command = [a.alt_python, os.path.join(SCRIPTS, "bench_alternatives.py"), name, "--flows", str(a.alt_flows),
               "--steps", str(a.steps), "--concurrency", str(a.concurrency), "--dir", work,
               "--timeout", str(a.alt_timeout - 20), "--stall", str(a.alt_stall)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=work)
    try:
        out, err = proc.communicate(timeout=a.alt_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the child and anything it started
        proc.communicate()
        return {"name": name, "flows_per_s": None, "error": f"hung: killed after {a.alt_timeout:.0f}s"}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        return {"name": name, "flows_per_s": None, "error": f"exit {proc.returncode}: {tail[:200]}"}
    return json.loads(lines[-1])


async def section_alternatives(tmp: str, a) -> list[dict]:
    return [await asyncio.to_thread(run_alternative, name, tmp, a) for name in ALTERNATIVES]


# -- report ------------------------------------------------------------------------------------

def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "FAIL")


def rows_of(results: dict, a) -> list[tuple[str, str, str, str, str]]:
    rows = []
    reference = None
    for run in results.get("throughput", []):
        if isinstance(run, dict) and "error" in run and "flows_per_s" not in run:
            rows.append(("throughput", run["case"], f"ERROR {run['error']}", "", ""))
            continue
        if "skipped" in run:
            rows.append(("throughput", run["case"], f"skipped: {run['skipped']}", "", ""))
            continue
        extra = ""
        if run.get("commands_per_commit"):
            extra = f"  ({run['journal_commits']} commits, {run['commands_per_commit']:.1f} cmd/commit)"
        target, ok = "", None
        if run["case"] == f"supervisor W={a.workers} FULL":
            reference = run["flows_per_s"]
            target, ok = ">= 6,000 flows/s", run["flows_per_s"] >= 6000
        rate = f"{run['flows_per_s']:,.0f} flows/s  {run['steps_per_s']:,.0f} steps/s{extra}"
        rows.append(("throughput", run["case"], rate, target, verdict(ok)))
        if run.get("cpu_us_per_flow"):
            cpu = run["cpu_us_per_flow"]
            rows.append(("throughput", "  CPU per flow: journal / workers / supervisor; journal busy",
                         f"{cpu['journal']:,.0f} / {cpu['worker']:,.0f} / {cpu['supervisor']:,.0f} us; "
                         f"{run['journal_busy']:.0%} of a core", "", ""))
            if "redis" in cpu:
                rows.append(("throughput", "  CPU per flow: redis-server", f"{cpu['redis']:,.0f} us", "", ""))
    lat = results.get("latency")
    if lat:
        if "error" in lat:
            rows.append(("latency", "", f"ERROR {lat['error']}", "", ""))
        else:
            bound = lat["commit_full_us"] + lat["zmq_rtt_us"] + 100
            rows.append(("latency", f"step p50 / p99, FULL, 1 flow at a time ({lat['step_samples']} gaps)",
                         f"{lat['step_p50_us']:,.0f} / {lat['step_p99_us']:,.0f} us",
                         f"p50 <= commit + round trip + 100 = {bound:,.0f} us", verdict(lat["step_p50_us"] <= bound)))
            rows.append(("latency", "  floors now: sqlite3 INSERT+COMMIT FULL / ZeroMQ round trip",
                         f"{lat['commit_full_us']:,.0f} / {lat['zmq_rtt_us']:,.0f} us", "", ""))
            for variant, key in (("", "inprocess"), (", inline store", "inprocess_inline")):
                full, normal = lat[f"{key}_full_step_p50_us"], lat[f"{key}_normal_step_p50_us"]
                rows.append(("latency", f"in-process step p50, FULL{variant}", f"{full:,.0f} us",
                             f"<= commit + 60 = {lat['commit_full_us'] + 60:,.0f} us",
                             verdict(full <= lat["commit_full_us"] + 60)))
                rows.append(("latency", f"in-process step p50, NORMAL{variant}", f"{normal:,.0f} us", "< 80 us",
                             verdict(normal < 80)))
            rows.append(("latency", f"flow end-to-end p50 / p99 ({lat['flows']} flows)",
                         f"{lat['flow_p50_ms']:.1f} / {lat['flow_p99_ms']:.1f} ms", "", ""))
    rec = results.get("recovery")
    if rec:
        if "error" in rec:
            rows.append(("recovery", "", f"ERROR {rec['error']}", "", ""))
        else:
            rows.append(("recovery", f"SIGKILL -> step re-run p50 / p99 / max ({rec['kills']} kills)",
                         f"{rec['p50_ms']:.0f} / {rec['p99_ms']:.0f} / {rec['max_ms']:.0f} ms",
                         "p50 < 300, p99 < 1000 ms", verdict(rec["p50_ms"] < 300 and rec["p99_ms"] < 1000)))
    if "memory" in results:
        full_case = f"supervisor W={a.workers} FULL"
        full = next((r for r in results.get("throughput", []) if r.get("case") == full_case), None)
        if full and "rss_max" in full:
            for name, rss in full["rss_max"].items():
                is_worker = full["roles"].get(name) == "worker"
                rows.append(("memory", f"{name} max RSS (throughput FULL)", f"{rss / MB:.1f} MB",
                             "< 80 MB" if is_worker else "", verdict(rss < 80 * MB) if is_worker else ""))
        q = results["memory"]
        if "error" in q:
            rows.append(("memory", "", f"ERROR {q['error']}", "", ""))
        else:
            growth = (q["rss_peak"] - q["rss_before"]) / MB
            rows.append(("memory", f"journal RSS, {q['queued']:,} flows queued: before / peak / after",
                         f"{q['rss_before'] / MB:.1f} / {q['rss_peak'] / MB:.1f} / {q['rss_after'] / MB:.1f} MB",
                         "flat", verdict(growth < 20)))
            rows.append(("memory", f"  scheduling {q['queued']:,} flows", f"{q['schedule_s']:.1f} s "
                         f"({q['queued'] / q['schedule_s']:,.0f} flows/s)", "", ""))
            rows.append(("memory", "  journal idle CPU (10 s): empty queue / queue",
                         f"{q['journal_idle_cpu_pct_before']:.2f}% / {q['journal_idle_cpu_pct_after']:.2f}%", "", ""))
            idle = max(q["idle_cpu_pct_before"], q["idle_cpu_pct_after"])
            rows.append(("memory", "  idle CPU, supervisor + journal + workers: empty queue / queue",
                         f"{q['idle_cpu_pct_before']:.2f}% / {q['idle_cpu_pct_after']:.2f}% "
                         f"(load {q['idle_load']:.1f})", "< 0.5%", verdict(idle < 0.5)))
            claim = max(q["empty_claim_ms_before"], q["empty_claim_ms_after"])
            rows.append(("memory", "  empty claim, median of 21: empty queue / queue",
                         f"{q['empty_claim_ms_before']:.2f} / {q['empty_claim_ms_after']:.2f} ms", "< 1 ms",
                         verdict(claim < 1.0)))
            rows.append(("memory", "  count_flows: empty queue / queue",
                         f"{q['count_flows_ms_before']:.1f} / {q['count_flows_ms_after']:.1f} ms", "", ""))
    for alt in results.get("alternatives", []):
        if alt.get("flows_per_s"):
            ratio = f"ergon_actors x{reference / alt['flows_per_s']:.1f}" if reference else ""
            value = f"{alt['flows_per_s']:,.0f} flows/s"
            if alt.get("error"):
                value += f"  ({alt['error']})"
            rows.append(("alternatives", f"{alt['name']} ({a.alt_flows} flows)", value, ratio, ""))
        else:
            error = str(alt.get("error"))
            value = f"skipped: {error}" if error.startswith("not installed") else f"FAILED: {error}"
            rows.append(("alternatives", f"{alt['name']} ({a.alt_flows} flows)", value, "", ""))
        if alt.get("setup"):
            rows.append(("alternatives", "", f"  {alt['setup']}", "", ""))
    return rows


def print_table(results: dict, a) -> None:
    print(f"ergon_actors bench: {a.flows} flows x {a.steps} steps, {a.workers} workers x concurrency "
          f"{a.concurrency}; python {platform.python_version()}, {os.cpu_count()} cores, tmp {results['tmp_fs']}")
    print(f"calibration: {results['calibration']:,.0f} pure-Python loop iterations/s "
          "(compare runs on other machines by this)")
    load = " -> ".join("/".join(f"{x:.2f}" for x in results[k]) for k in ("loadavg_start", "loadavg_end"))
    print(f"load average (1/5/15 min) at start -> end: {load}  (other processes skew every number)")
    rows = [("section", "case", "result", "target", ""), *rows_of(results, a)]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for section, case, value, target, ok in rows:
        line = f"{section:<{widths[0]}}  {case:<{widths[1]}}  {value}"
        if target or ok:
            line += f"   [{target}{' ' if target and ok else ''}{ok}]"
        print(line)
    for name, error in results.get("errors", {}).items():
        print(f"error in {name}: {error}")


# -- main --------------------------------------------------------------------------------------

async def run(a, tmp: str) -> dict:
    results: dict = {"args": {k: v for k, v in vars(a).items()}, "tmp_fs": filesystem_of(tmp), "errors": {},
                     "loadavg_start": os.getloadavg(), "calibration": calibration()}
    for name in a.only:
        section = {"throughput": section_throughput, "latency": section_latency, "recovery": section_recovery,
                   "memory": section_queue_memory, "alternatives": section_alternatives}[name]
        if name == "memory" and "throughput" not in a.only:
            results["throughput"] = [await throughput_supervisor(tmp, a, "FULL")]  # the RSS samples
        started = time.perf_counter()
        try:
            results[name] = await section(tmp, a)
        except Exception as exc:  # one broken section must not hide the others
            results["errors"][name] = f"{type(exc).__name__}: {exc}"
            results[name] = [] if name in ("throughput", "alternatives") else {"error": str(exc)}
        results.setdefault("section_seconds", {})[name] = round(time.perf_counter() - started, 1)
        if not a.json:
            print(f"# {name} done in {results['section_seconds'][name]:.0f} s", file=sys.stderr)
    results["loadavg_end"] = os.getloadavg()
    return results


def calibration(n: int = 2_000_000) -> float:
    """A fixed pure-Python workload's rate (iterations/s, best of 3): how fast this machine runs
    Python right now, printed beside the figures."""
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        total = 0
        for i in range(n):
            total += i * i % 7
        best = max(best, n / (time.perf_counter() - t0))
    return best


def filesystem_of(path: str) -> str:
    best = None
    for part in psutil.disk_partitions(all=True):
        if path.startswith(part.mountpoint) and (best is None or len(part.mountpoint) > len(best.mountpoint)):
            best = part
    return f"{best.fstype} at {best.mountpoint}" if best else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description="ergon_actors benchmark (see the module docstring)")
    parser.add_argument("--flows", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=256, help="flows at once per worker")
    parser.add_argument("--latency-flows", type=int, default=200)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--queued", type=int, default=100_000, help="flows queued in the memory section")
    parser.add_argument("--metrics-port", type=int, default=0,
                        help="serve Prometheus metrics from the supervisors on this port, scraped once a second")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated: " + ",".join(SECTIONS))
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--alt-python", default=os.environ.get("ERGON_BENCH_ALT_PYTHON", sys.executable))
    parser.add_argument("--alt-timeout", type=float, default=300.0, help="seconds per alternative")
    parser.add_argument("--alt-flows", type=int, default=None,
                        help="flows per alternative (default: --flows; DBOS runs 20,000 in about 9 minutes)")
    parser.add_argument("--dir", default=None, help="parent of the temporary directory (default: system tmp)")
    a = parser.parse_args()
    a.only = [s.strip() for s in a.only.split(",") if s.strip()]
    unknown = set(a.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    if a.workers < 2 and "recovery" in a.only:
        parser.error("the recovery section needs --workers >= 2")
    a.alt_flows, a.alt_stall = a.alt_flows or a.flows, 10.0
    if a.quick:
        a.flows, a.latency_flows, a.kills, a.queued = min(a.flows, 300), 30, 3, 10_000
        a.alt_flows, a.alt_stall, a.alt_timeout = 100, 5.0, min(a.alt_timeout, 60.0)
    tmp = tempfile.mkdtemp(prefix="ergon-bench-", dir=a.dir)
    try:
        results = asyncio.run(run(a, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        print_table(results, a)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
