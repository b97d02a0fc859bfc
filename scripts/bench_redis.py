"""What one Redis costs per flow: Redis CPU and script time per command, by command kind.

Run from the repository root:

    python scripts/bench_redis.py                 # 5,000 flows of 3 steps, batches of 200
    python scripts/bench_redis.py --flows 20000 --batch 200 --redis-benchmark

Starts its own redis-server (AOF, appendfsync always, loopback) and drives the Redis store
directly, one phase per command kind, in batches as the journal sends them. For each phase it
prints Redis's own CPU (INFO cpu, user + system: Lua, commands, network and AOF writes) and the
script time Redis counted (INFO commandstats, EVALSHA usec), per command and per flow. The sum
per flow of a 3-step flow (schedule, its share of a claim, three steps, the finish, a renewal
share) bounds the flows/s one Redis can take on one core: docs/performance.md, "Redis capacity".
With --redis-benchmark it also runs `redis-benchmark` against the same server for the plain
command rate of this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import redis.asyncio as aioredis

from ergon_actors.core import StepRecord
from ergon_actors.storage.commands import (AppendStep, ClaimFlows, Command, FinishFlow, NextDue, RenewLeases,
                                           ScheduleFlow)
from ergon_actors.storage.redis import RedisExecutionLog
from ergon_actors.testing import RedisServer

LEASE = 30.0
CLAIM = 256  # flows one claim takes, as a worker of concurrency 256 asks
IDLE = "idle poll (per poll)"  # an empty claim and a NextDue, as an idle worker sends them


async def cpu_and_script(raw: aioredis.Redis) -> tuple[float, float, float, int, int]:
    """Redis's user and system CPU seconds so far; since the last reset, the EVALSHA microseconds
    and calls, and the Redis commands the scripts ran."""
    cpu = await raw.info("cpu")
    all_stats = await raw.info("commandstats")
    stats = all_stats.get("cmdstat_evalsha", {"usec": 0, "calls": 0})
    ops = sum(s["calls"] for name, s in all_stats.items()
              if not name.startswith(("cmdstat_evalsha", "cmdstat_info", "cmdstat_config")))
    return cpu["used_cpu_user"], cpu["used_cpu_sys"], float(stats["usec"]), int(stats["calls"]), ops


async def phase(name: str, log: RedisExecutionLog, raw: aioredis.Redis, batches: Sequence[list[Command]],
                per: int, check: Callable[[list[object]], None] = lambda r: None) -> dict[str, float]:
    """Run the batches; Redis CPU and script time per command and per flow (`per` commands a flow)."""
    await raw.config_resetstat()
    user0, sys0, _, _, _ = await cpu_and_script(raw)
    t0 = time.perf_counter()
    commands = 0
    for batch in batches:
        results = await log.execute(batch)
        bad = [r for r in results if isinstance(r, BaseException)]
        if bad:
            raise RuntimeError(f"{name}: {bad[0]!r}")
        check(results)
        commands += len(batch)
    wall = time.perf_counter() - t0
    user1, sys1, script_us, calls, ops = await cpu_and_script(raw)
    cpu_us = (user1 - user0 + sys1 - sys0) * 1e6
    row = {"commands": commands, "calls": calls, "wall_s": wall, "cpu_us_per_command": cpu_us / commands,
           "script_us_per_command": script_us / commands, "sys_share": (sys1 - sys0) * 1e6 / cpu_us,
           "ops_per_command": ops / commands}
    row["cpu_us_per_flow"] = row["cpu_us_per_command"] * per
    row["script_us_per_flow"] = row["script_us_per_command"] * per
    return row


def chunks(commands: list[Command], size: int) -> list[list[Command]]:
    return [commands[i:i + size] for i in range(0, len(commands), size)]


async def measure(url: str, a: argparse.Namespace) -> dict[str, dict[str, float]]:
    log = await RedisExecutionLog(url).connect()
    raw = aioredis.Redis.from_url(url)
    ids = [f"f-{i}" for i in range(a.flows)]
    rows: dict[str, dict[str, float]] = {}
    try:
        rows["ScheduleFlow"] = await phase("schedule", log, raw, chunks(
            [ScheduleFlow(i, "Noop", b"\x93\x01\x02\x03") for i in ids], a.batch), 1)
        claims = [[ClaimFlows(f"w{n % 2}", f"req-{n}", CLAIM, LEASE, flow_types=["Noop"])]
                  for n in range((a.flows + CLAIM - 1) // CLAIM)]
        epochs: dict[str, int] = {}

        def claimed(results: list[object]) -> None:
            for claim in results[0]:  # type: ignore[attr-defined]
                epochs[claim.flow.flow_id] = claim.flow.epoch

        rows["ClaimFlows (per flow)"] = await phase("claim", log, raw, claims, 1, claimed)
        for key in ("cpu_us_per_command", "script_us_per_command", "ops_per_command"):
            rows["ClaimFlows (per flow)"][key] *= len(claims) / a.flows
        if len(epochs) != a.flows:
            raise RuntimeError(f"claimed {len(epochs)} of {a.flows} flows")
        owned = {w: [i for n, i in enumerate(ids) if n % 2 == w] for w in (0, 1)}
        renewals = [[RenewLeases(f"w{w}", LEASE, tuple(owned[w][k:k + CLAIM]))]
                    for w in (0, 1) for k in range(0, len(owned[w]), CLAIM)]
        rows["RenewLeases (per flow)"] = await phase("renew", log, raw, renewals, 1)
        for key in ("cpu_us_per_command", "script_us_per_command", "ops_per_command"):
            rows["RenewLeases (per flow)"][key] *= len(renewals) / a.flows
        for key in ("cpu_us_per_flow", "script_us_per_flow"):
            rows["RenewLeases (per flow)"][key] = rows["RenewLeases (per flow)"][key.replace("flow", "command")]
        for name in ("ClaimFlows (per flow)",):
            for key in ("cpu_us_per_flow", "script_us_per_flow"):
                rows[name][key] = rows[name][key.replace("flow", "command")]
        steps = [AppendStep(i, epochs[i], StepRecord(p, f"step{p}", p, result=b"\xc0"))
                 for p in range(a.steps) for i in ids]
        rows["AppendStep"] = await phase("steps", log, raw, chunks(steps, a.batch), a.steps)
        rows["FinishFlow"] = await phase("finish", log, raw, chunks(
            [FinishFlow(i, epochs[i], "COMPLETE", result=b"\xc0") for i in ids], a.batch), 1)
        idle = [[ClaimFlows("idle", f"idle-{n}", CLAIM, LEASE, flow_types=["Noop"]), NextDue(("Noop",))]
                for n in range(1000)]  # what an idle worker sends about once a second: not part of a flow
        rows[IDLE] = await phase("idle", log, raw, idle, 0)
        for key in ("cpu_us_per_command", "script_us_per_command", "ops_per_command"):
            rows[IDLE][key] *= 2  # per idle poll (a batch of the two)
    finally:
        await raw.aclose()
        await log.close()
    return rows


async def configure(url: str, appendfsync: str) -> None:
    raw = aioredis.Redis.from_url(url)
    try:
        await raw.config_set("appendfsync", appendfsync)
    finally:
        await raw.aclose()


def redis_benchmark(url_port: int) -> str:
    """redis-benchmark's plain command rates against the same server (50 clients, no pipelining)."""
    out = subprocess.run(["redis-benchmark", "-p", str(url_port), "-q", "-n", "100000", "-t", "set,get,incr",
                          "-c", "50"], capture_output=True, text=True, timeout=600)
    lines = out.stdout.replace("\r", "\n").splitlines()  # progress lines end in \r; the totals name the rate
    return "\n".join(line.strip() for line in lines if "requests per second" in line)


def main() -> int:
    parser = argparse.ArgumentParser(description="Redis CPU per command and per flow (see the module docstring)")
    parser.add_argument("--flows", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=200, help="commands per batch, as the journal groups them")
    parser.add_argument("--redis-benchmark", action="store_true", help="also run redis-benchmark on the server")
    parser.add_argument("--appendfsync", default="always", choices=("always", "everysec", "no"))
    a = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="ergon-bench-redis-")
    server = RedisServer(Path(directory)).start()
    try:
        asyncio.run(configure(server.url, a.appendfsync))
        load = os.getloadavg()
        rows = asyncio.run(measure(server.url, a))
        plain = redis_benchmark(int(server.url.rsplit(":", 1)[1].split("/")[0])) if a.redis_benchmark else ""
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    print(f"{a.flows} flows x {a.steps} steps, batches of {a.batch}, appendfsync {a.appendfsync}, "
          f"load average {load[0]:.2f} at start, {os.getloadavg()[0]:.2f} at the end")
    print(f"{'command':<24}{'Redis CPU us/cmd':>18}{'script us/cmd':>15}{'CPU us/flow':>13}{'script us/flow':>16}"
          f"{'system CPU':>12}{'ops/cmd':>9}")
    total_cpu = total_script = 0.0
    for name, row in rows.items():
        if name == IDLE:
            continue
        total_cpu += row["cpu_us_per_flow"]
        total_script += row["script_us_per_flow"]
        print(f"{name:<24}{row['cpu_us_per_command']:>18.1f}{row['script_us_per_command']:>15.1f}"
              f"{row['cpu_us_per_flow']:>13.1f}{row['script_us_per_flow']:>16.1f}{row['sys_share']:>12.0%}{row['ops_per_command']:>9.1f}")
    print(f"{'a flow in all':<24}{'':>18}{'':>15}{total_cpu:>13.1f}{total_script:>16.1f}")
    idle = rows[IDLE]
    print(f"{IDLE:<24}{idle['cpu_us_per_command']:>18.1f}{idle['script_us_per_command']:>15.1f}"
          f"{'':>41}{idle['ops_per_command']:>9.1f}")
    print(f"ceiling on one Redis core: {1e6 / total_cpu:,.0f} flows/s by Redis CPU, "
          f"{1e6 / total_script:,.0f} flows/s by script time alone")
    if plain:
        print(f"redis-benchmark (50 clients, no pipelining, appendfsync {a.appendfsync}):")
        print(plain)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
