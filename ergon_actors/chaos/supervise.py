"""The supervisor under test of a chaos run, as a process of its own:

    python -m ergon_actors.chaos.supervise MODULE... --store URL --workers W --grace S
        [--fault-plan PLAN] [--kill-marks DIR]

It runs like `python -m ergon_actors run` (settings from ERGON_* variables, SIGINT/SIGTERM
drain, a second one stops at once) and logs at INFO to stderr. With --fault-plan, and only
here, its journal wraps the store in chaos.faulty's deliberately broken FaultyStore. With
--kill-marks, and only here, a worker death the harness marked in DIR (chaos.marks) releases
the worker's flows instead of being recorded against them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from ..config import Settings
from ..errors import ErgonError
from ..runtime import Supervisor, serve
from ..runtime.actor import StoreWrapper
from .faulty import WRAPPER, parse_plan
from .marks import KillMarks

__all__ = ["main"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ergon_actors.chaos.supervise")
    parser.add_argument("modules", nargs="+")
    parser.add_argument("--store", required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--grace", type=float, required=True)
    parser.add_argument("--fault-plan", default="")
    parser.add_argument("--kill-marks", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parse_plan(args.fault_plan)
    settings = Settings.from_env(store=args.store, workers=args.workers, grace=args.grace)
    wrapper = StoreWrapper(WRAPPER, args.fault_plan) if args.fault_plan else None
    try:
        marks = KillMarks(args.kill_marks) if args.kill_marks else None
        forced = asyncio.run(serve(Supervisor(args.modules, settings, store_wrapper=wrapper, harness_kills=marks)))
    except KeyboardInterrupt:
        return 130
    except ErgonError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 130 if forced else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
