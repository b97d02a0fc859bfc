"""Alternate bench.py's supervisor throughput cases between source trees, one run at a time.

    python scripts/bench_ab.py --trees /path/to/before,/path/to/after --cases full,redis --rounds 3

Each round runs every tree's cases in turn, each case in a process of its own with that tree
first on PYTHONPATH (its bench.py and its ergon_actors), and prints one JSON line per run with
the load average at its start and end; the medians per tree and case come last. On a shared
machine compare only runs taken alternately like this, in the same minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile


def one_run(case: str, flows: int) -> dict[str, object]:
    """Run one case of this tree's bench.py (the tree is the first PYTHONPATH entry)."""
    tree = os.environ["PYTHONPATH"].split(os.pathsep)[0]
    spec = importlib.util.spec_from_file_location("bench", os.path.join(tree, "scripts", "bench.py"))
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = bench
    spec.loader.exec_module(bench)
    a = argparse.Namespace(flows=flows, steps=3, workers=2, concurrency=256, metrics_port=0, quick=False)
    with tempfile.TemporaryDirectory() as tmp:
        load = os.getloadavg()[0]
        run = bench.throughput_redis(tmp, a) if case == "redis" else bench.throughput_supervisor(tmp, a, "FULL")
        result = asyncio.run(run)
    return {"case": case, "flows_per_s": round(result["flows_per_s"]), "load_start": round(load, 2),
            "load_end": round(os.getloadavg()[0], 2), "commits": result.get("journal_commits"),
            "commands_per_commit": round(result.get("commands_per_commit") or 0.0, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", required=True, help="comma-separated source trees to alternate")
    parser.add_argument("--cases", default="full,redis", help="comma-separated: full (SQLite FULL), redis")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flows", type=int, default=20_000)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a single run, in the child process
    a = parser.parse_args()
    if a.one:
        print(json.dumps(one_run(a.one, a.flows)), flush=True)
        return 0
    results: dict[tuple[str, str], list[int]] = {}
    for round_ in range(1, a.rounds + 1):
        for tree in a.trees.split(","):
            for case in a.cases.split(","):
                env = {**os.environ, "PYTHONPATH": os.pathsep.join([tree, os.path.join(tree, "scripts")])}
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--trees", tree, "--one", case,
                                      "--flows", str(a.flows)], env=env, capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                results.setdefault((tree, case), []).append(row["flows_per_s"])
                print(json.dumps({"round": round_, "tree": tree, **row}), flush=True)
    for (tree, case), rates in results.items():
        print(f"median {case:5} {tree}: {statistics.median(rates):,.0f} flows/s of {len(rates)} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
