"""Run PyErgon 0.8.1's example programs against ergon_actors, with only their imports renamed.

Run from the repository root:

    python scripts/pyergon_examples.py                       # download the examples, run each
    python scripts/pyergon_examples.py --pyergon-repo PATH   # the examples from a clone of PyErgon
    python scripts/pyergon_examples.py saga nested_flows     # only these

Each example (PyErgon's examples/ at tag v0.8.1) gets its `pyergon` names renamed as
scripts/pyergon_suite.py does, and runs in a folder of its own (they create data/ and .db
files) with a timeout. An example passes when it exits 0, prints none of the marks its
self-checks print on failure, and prints what it demonstrates (EXPECTED below, from its
docstring). The example for PyErgon's Redis store needs Redis on localhost:6379: with --redis
the script starts a throwaway redis-server there (if the port is free) and stops it afterwards.
The exit status is 0 only when every example that ran passed.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

from pyergon_suite import ROOT, VERSION, rename

ARCHIVE_URL = f"https://github.com/richinex/pyergon/archive/refs/tags/v{VERSION}.tar.gz"
# What the examples print when a self-check fails ("FAILED" alone is a flow status they print).
FAILURE = re.compile(r"\bFAIL\b|^ERROR|Traceback \(most recent call last\)|AssertionError|Timeout waiting",
                     re.MULTILINE)
# What each example prints when it did what it demonstrates (its docstring says what that is;
# the examples that assert instead exit non-zero otherwise). Every pattern must appear.
EXPECTED: dict[str, list[str]] = {
    "complex_multi_worker_load_sqlite": [r"SUCCESS: SYSTEM IS DETERMINISTIC UNDER LOAD"],
    "comprehensive_demo": [r": COMPLETE \(retries", r": FAILED \(retries"],  # one order's payment always fails
    "custom_error_boxed": [r"Network timeout \(retryable\)\n.*\n  Status: COMPLETE \(retries: 2\)",
                           r"Insufficient funds \(permanent\)\n.*\n  Status: FAILED \(retries: 0\)",
                           r"Warehouse timeout \(retryable\)\n.*\n  Status: COMPLETE \(retries: 1\)",
                           r"Out of stock \(permanent\)\n.*\n  Status: FAILED \(retries: 0\)"],
    "dag_limit_parallel": [r"\[PASS\] Parallel DAG executed correctly"],
    "dag_limit_sequential": [r"\[PASS\] Sequential DAG executed correctly"],
    "dag_non_deterministic": [r"\[PASS\] NON-DETERMINISM DETECTED"],
    "distributed_worker_timer": [r"SUCCESS: All flows completed"],
    "external_signal_abstraction": [r"Counters: validate=2, manager=2, legal=1, publish=1"],
    "graceful_shutdown_demo": [r"Tasks completed: 10/10", r"Tasks failed: 0/10"],
    "graceful_shutdown_demo_redis": [r"Tasks completed: 10/10", r"Tasks failed: 0/10"],
    "graceful_shutdown_demo_sqlite": [r"Tasks completed: 10/10", r"Tasks failed: 0/10"],
    "nested_flows": [r"Order processing COMPLETE"],
    "numpy_computation_pipeline": [r": COMPLETE \(retries"],
    "saga": [r"Paris: success", r"Atlantis: compensated"],
    "simple_timer_sqlite": [r"Timer Done!"],
    "simple_workflow": [r"Pipeline complete!"],
    "test_dag_multiple_invoke_versioned": [r"\[PASS\] Multi-invoke versioned example complete"],
    "timer_child_minimal": [r"Test1 \(should succeed\): COMPLETE - PASS", r"Test2 \(should fail\): FAILED - PASS"],
}


def examples(repo: Path | None) -> dict[str, str]:
    """PyErgon's example programs at its release tag, by name."""
    if repo is not None:
        names = subprocess.run(["git", "-C", str(repo), "ls-tree", "--name-only", f"v{VERSION}", "examples/"],
                               check=True, capture_output=True, text=True).stdout.split()
        return {Path(n).stem: subprocess.run(["git", "-C", str(repo), "show", f"v{VERSION}:{n}"], check=True,
                                             capture_output=True, text=True).stdout
                for n in names if n.endswith(".py")}
    with urllib.request.urlopen(ARCHIVE_URL, timeout=60) as answer:
        data = answer.read()
    found = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if len(parts) == 3 and parts[1] == "examples" and member.name.endswith(".py"):
                extracted = archive.extractfile(member)
                if extracted is not None:
                    found[Path(member.name).stem] = extracted.read().decode()
    return found


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def run_one(name: str, source: str, work: Path, timeout: float) -> tuple[bool, float, str]:
    """Run one renamed example in a fresh folder: (passed, seconds, its output)."""
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / f"{name}.py").write_text(rename(source))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, f"{name}.py"], cwd=folder, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return False, time.monotonic() - started, output + f"\n[timed out after {timeout:g}s]"
    output = done.stdout + done.stderr
    (folder / "output.txt").write_text(output)
    passed = (done.returncode == 0 and FAILURE.search(output) is None
              and all(re.search(pattern, output) for pattern in EXPECTED.get(name, ())))
    return passed, time.monotonic() - started, output + ("" if done.returncode == 0 else f"\n[exit {done.returncode}]")


def last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:120] if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="run only these examples")
    parser.add_argument("--work", type=Path, default=ROOT / ".pyergon-suite" / "examples")
    parser.add_argument("--pyergon-repo", type=Path, help="a git clone of PyErgon")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds each example may take")
    parser.add_argument("--redis", action="store_true", help="start a redis-server on localhost:6379")
    args = parser.parse_args(argv)
    found = examples(args.pyergon_repo)
    chosen = args.names or sorted(found)
    redis = None
    if args.redis and port_free(6379):
        redis = subprocess.Popen(["redis-server", "--port", "6379", "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while port_free(6379) and time.monotonic() < deadline:
            time.sleep(0.1)
    failed = []
    try:
        print("| example | result | seconds | last line |\n|---|---|---|---|")
        for name in chosen:
            if name not in found:
                raise SystemExit(f"no example named {name!r} (there are: {', '.join(sorted(found))})")
            passed, seconds, output = run_one(name, found[name], args.work, args.timeout)
            print(f"| {name} | {'pass' if passed else 'FAILED'} | {seconds:.1f} | {last_line(output)} |", flush=True)
            if not passed:
                failed.append(name)
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait(timeout=10)
    print(f"\n{len(chosen) - len(failed)} of {len(chosen)} examples passed"
          + (f"; failed: {', '.join(failed)} (outputs in {args.work})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
