"""What a code version costs a claim: one claim of 10 flows, without a version, with one, and with
one while many due flows of another version wait (they are stepped over).

Run from the repository root:

    python scripts/bench_versions.py                 # SQLite file
    python scripts/bench_versions.py --redis         # also Redis (starts a redis-server of its own)
    python scripts/bench_versions.py --backlog 20000 --repeat 50

Each claim takes 10 flows of its own version (they are released again, so the queue stays the
same) and is timed --repeat times; the median is reported in milliseconds. Nothing is asserted:
the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ergon_actors.storage import LogBase, open_store  # noqa: E402
from ergon_actors.storage.commands import ScheduleFlow  # noqa: E402
from ergon_actors.testing import RedisServer  # noqa: E402

BATCH = 5000


async def queue(store: LogBase, prefix: str, count: int, version: str | None) -> None:
    for start in range(0, count, BATCH):
        await store.execute([ScheduleFlow(f"{prefix}-{i}", "Parcel", b"\x90", version)
                             for i in range(start, min(start + BATCH, count))])


async def claim_ms(store: LogBase, version: str | None, repeat: int) -> float:
    """The median time of a claim of 10 flows, each released again before the next."""
    times = []
    for _ in range(repeat + 1):  # the first one is not counted: it prepares statements and scripts
        began = time.perf_counter()
        claims = await store.claim("bench", 10, 30.0, flow_types=("Parcel",), version=version)
        times.append((time.perf_counter() - began) * 1000)
        assert len(claims) == 10, len(claims)
        await store.release_worker("bench")
    return statistics.median(times[1:])


async def bench(url: str, backlog: int, repeat: int) -> None:
    store = await open_store(url)
    try:
        await store.reset()
        await queue(store, "mine", 100, "2")
        plain = await claim_ms(store, None, repeat)
        versioned = await claim_ms(store, "2", repeat)
        await queue(store, "other", backlog, "1")
        await asyncio.sleep(0.01)  # the backlog is due: scheduled before now
        behind = await claim_ms(store, "2", repeat)
        print(f"{url.split(':')[0]:<7} no version {plain:6.2f} ms · version {versioned:6.2f} ms · "
              f"version, {backlog} due flows of another version first {behind:6.2f} ms")
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=10_000, help="due flows of another version (default 10000)")
    parser.add_argument("--repeat", type=int, default=30, help="claims timed per figure (default 30)")
    parser.add_argument("--redis", action="store_true", help="also measure Redis")
    args = parser.parse_args()
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(bench(f"sqlite:///{folder}/bench.db", args.backlog, args.repeat))
        if args.redis:
            server = RedisServer(Path(folder) / "redis").start()
            try:
                asyncio.run(bench(server.url, args.backlog, args.repeat))
            finally:
                server.stop()


if __name__ == "__main__":
    main()
