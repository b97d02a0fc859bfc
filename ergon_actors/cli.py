"""python -m ergon_actors: run, schedule, status, inspect, signal, cancel. Parsing and output only."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
import time
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from . import codec
from .config import DEFAULT_STORE, Settings, public_store_url
from .core import Crash, FlowRecord
from .decorators import definition_of
from .errors import (ConfigError, ErgonError, FlowDefinitionError, FlowNotFoundError,
                     RestartIntensityError, StoreError, UnknownFlowTypeError)

if TYPE_CHECKING:
    from .runtime.snapshot import Snapshot

__all__ = ["main", "build_parser", "ExitCode"]

log = logging.getLogger("ergon_actors.cli")


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1          # an unexpected error (a bug: please report it with the traceback)
    USAGE = 2          # bad command-line arguments
    GAVE_UP = 3        # actors restarted more often than the restart intensity allows
    NOT_FOUND = 4      # no such flow, module or flow class
    STORE = 5          # the store cannot be opened (bad URL, foreign or newer file, unreachable)
    VIOLATIONS = 6     # chaos: the run broke a promise (the report names flows and steps)
    INTERRUPTED = 130  # stopped by a second Ctrl-C / SIGTERM before draining finished


EXIT_CODES_HELP = "exit codes:\n" + "\n".join(
    f"  {code.value:<4} {code.name}" for code in ExitCode)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ergon_actors", description="Durable flows on a supervised pool of worker processes.",
        epilog=EXIT_CODES_HELP + f"\n\nThe store defaults to $ERGON_STORE or {DEFAULT_STORE}.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, epilog=EXIT_CODES_HELP,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("--store", help="store URL: sqlite:///FILE, redis://HOST:PORT/DB, memory://")
        return sub

    run = command("run", "Run a supervised pool of workers serving MODULE's flow types.")
    run.add_argument("modules", nargs="+", metavar="MODULE", help="module(s) defining @flow_type classes")
    run.add_argument("--workers", type=int, help="worker processes (default 2)")
    run.add_argument("--concurrency", type=int, help="flows per worker at once (default 256)")
    run.add_argument("--until-idle", action="store_true", help="exit 0 once no flow is running or due")
    run.add_argument("--synchronous", choices=("OFF", "NORMAL", "FULL", "EXTRA"), help="SQLite durability")
    run.add_argument("--lease", type=float, dest="lease_seconds", help="flow lease in seconds (default 15)")
    run.add_argument("--grace", type=float, help="seconds steps in flight get to finish on shutdown")

    schedule = command("schedule", "Queue a flow; prints its flow id as the last line.")
    schedule.add_argument("target", metavar="MODULE:Class")
    schedule.add_argument("--args", default="{}", help="the flow's fields as a JSON object")
    schedule.add_argument("--id", dest="flow_id", help="flow id (idempotency key); default: a new UUID")
    schedule.add_argument("--delay", type=float, help="run no sooner than this many seconds from now")

    status = command("status", "Flows by status, the workers holding flows, and the supervisors running "
                               "on the store on this host: their actors, pids, restarts and figures.")
    status.add_argument("--json", action="store_true", help="also every flow's id, class, status, result or "
                        "error, and each supervisor's status snapshot")
    status.add_argument("--limit", type=int, default=1000, help="flows listed with --json (default 1000)")

    send = command("signal", "Send a signal to the flow waiting for NAME (kept until one waits).")
    send.add_argument("name", metavar="NAME")
    payload = send.add_mutually_exclusive_group()
    payload.add_argument("--data", help="the payload as JSON")
    payload.add_argument("--data-file", type=argparse.FileType("rb"), help="the payload: a file's bytes")

    cancel = command("cancel", "Cancel a flow and its child flows.")
    cancel.add_argument("flow_id", metavar="FLOW_ID")

    inspect = command("inspect", "One flow: its steps, attempts and results.")
    inspect.add_argument("flow_id", metavar="FLOW_ID")
    inspect.add_argument("--json", action="store_true")

    chaos = command("chaos", "Run MODULE's flows under a supervisor while faults hit it, then verify "
                             "the journal and the side-effect ledger (docs/chaos.md). The store is a "
                             "temporary SQLite file unless --store names one; --store redis starts (and "
                             "kills) a redis-server of its own.")
    chaos.add_argument("module", metavar="MODULE", help="module defining the @flow_type classes and chaos_flows")
    chaos.add_argument("--flows", type=int, default=50, metavar="N",
                       help="flows to run, built by MODULE.chaos_flows(N, SEED) (default 50)")
    chaos.add_argument("--schedule", metavar="MODULE:factory", help="another factory, called factory(N, SEED)")
    chaos.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    chaos.add_argument("--duration", type=float, metavar="S",
                       help="seconds of faults (default 0.45 per flow, 10 to 90)")
    chaos.add_argument("--faults", metavar="LIST", help="comma-separated, of kill-worker, stop-worker, "
                       "kill-journal, kill-supervisor, kill-redis (default: all the store allows)")
    chaos.add_argument("--seed", type=int, default=0, help="seeds the fault schedule and the flows (default 0)")
    chaos.add_argument("--json", action="store_true", help="print the report as JSON")
    chaos.add_argument("--keep", action="store_true", help="keep the store, ledger and logs (kept anyway "
                       "when a promise was broken)")
    chaos.add_argument("--fault-plan", default="", metavar="PLAN",
                       help="test only: break the journal on purpose (journal:skip_fencing, "
                            "journal:ack_before_commit=N) to see the verifier catch it")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("ergon_actors").setLevel(level)
    try:
        return asyncio.run(_COMMANDS[args.command](args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.STORE
    except (FlowNotFoundError, FlowDefinitionError, ModuleNotFoundError, UnknownFlowTypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.NOT_FOUND
    except RestartIntensityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.GAVE_UP
    except ErgonError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    except KeyboardInterrupt:  # before `run` handles interrupts itself: nothing was started yet
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return Settings.from_env(store=args.store, **extra)


async def _run(args: argparse.Namespace) -> int:
    from .runtime import Supervisor, serve
    from .runtime.worker import discover_flows

    settings = _settings(args, workers=args.workers, concurrency=args.concurrency,
                         synchronous=args.synchronous, lease_seconds=args.lease_seconds, grace=args.grace)

    async def check() -> None:
        discover_flows(args.modules)  # fail here, with one clear message, rather than in every worker
        await _counts(settings)  # likewise for a store that cannot be opened

    forced = await serve(Supervisor(args.modules, settings), until_idle=args.until_idle, prepare=check,
                         notify=lambda line: print(line, file=sys.stderr))
    counts = await _counts(settings)
    print("flows: " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items()) if k != "due"))
    return ExitCode.INTERRUPTED if forced else ExitCode.OK


async def _counts(settings: Settings) -> dict[str, int]:
    from .storage import open_store
    store = await open_store(settings.store, synchronous=settings.synchronous)
    try:
        return await store.count_flows()
    finally:
        await store.close()


def _flow_class(target: str) -> type:
    module_name, sep, class_name = target.partition(":")
    if not sep or not module_name or not class_name:
        raise ConfigError(f"{target!r}: write MODULE:Class, e.g. examples.orders:OrderFlow")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise FlowDefinitionError(f"module {module_name!r} has no class {class_name!r}")
    return definition_of(cls).cls


async def _schedule(args: argparse.Namespace) -> int:
    from .executor import Scheduler
    from .storage import open_store

    cls = _flow_class(args.target)
    try:
        fields = json.loads(args.args)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--args is not valid JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise ConfigError("--args must be a JSON object of the flow's fields")
    try:
        instance = cls(**fields)
    except TypeError as exc:
        raise ConfigError(f"--args do not fit {cls.__name__}: {exc}") from None
    settings = _settings(args)
    store = await open_store(settings.store, synchronous=settings.synchronous)
    try:
        flow_id = await Scheduler(store).schedule(instance, args.flow_id, delay=args.delay)
    finally:
        await store.close()
    print(flow_id)
    return ExitCode.OK


async def _status(args: argparse.Namespace) -> int:
    from .runtime import rundir
    from .storage import open_store

    settings = _settings(args)
    store = await open_store(settings.store, synchronous=settings.synchronous)
    try:
        counts = await store.count_flows()
        flows = await store.list_flows(limit=args.limit) if args.json else []
        running = await store.list_flows("RUNNING", limit=100_000)
    finally:
        await store.close()
    workers: dict[str, int] = {}
    for flow in running:
        workers[flow.owner or "?"] = workers.get(flow.owner or "?", 0) + 1
    url = public_store_url(settings.store)
    supervisors = [s for s in rundir.snapshots() if s.store == url]
    if args.json:
        print(json.dumps({"counts": counts, "workers": workers, "flows": [_flow_json(f) for f in flows],
                          "supervisors": [s.to_dict() for s in supervisors]}, indent=2, default=str))
        return ExitCode.OK
    total = sum(v for k, v in counts.items() if k not in ("due", "quarantined"))
    print(f"store: {url}\nflows: {total}")
    for status in ("PENDING", "RUNNING", "SUSPENDED", "COMPLETE", "FAILED", "CANCELLED"):
        print(f"  {status.lower():<10} {counts.get(status, 0)}")
    print(f"  {'of which quarantined as poison':<10} {counts.get('quarantined', 0)}")
    print(f"  {'due now':<10} {counts.get('due', 0)}")
    print(f"workers holding flows: {len(workers)}")
    for owner, n in sorted(workers.items()):
        print(f"  {owner}: {n}")
    print(f"supervisors running on this store here: {len(supervisors)}")
    for snap in supervisors:
        _print_supervisor(snap)
    return ExitCode.OK


def _print_supervisor(snap: Snapshot) -> None:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.started))
    journal = snap.journal
    store = "ok"
    if journal.store_failing_since is not None:
        since = time.strftime("%H:%M:%S", time.localtime(journal.store_failing_since))
        store = f"failing since {since}: {journal.store_error}"
    print(f"  pid {snap.pid} on {snap.host}, {snap.state} since {started}, {snap.restarts} restarts, "
          f"{snap.dropped} malformed messages dropped")
    print(f"    worker crashes recorded on flows: {snap.crashes}, flows quarantined: {snap.quarantined}, "
          f"workers recycled: {snap.recycles}")
    print(f"    journal: {journal.commits} commits, {journal.commands_per_commit:.1f} commands per commit, "
          f"{journal.fenced} writes refused, {journal.malformed} malformed messages dropped; store {store}")
    print(f"    {'actor':<10} {'pid':>7} {'ready':<5} {'restarts':>8}  {'heartbeat':>9} {'rss MB':>7} {'cpu %':>6}  "
          "exit codes")
    for a in snap.actors:
        beat = "-" if a.heartbeat_age is None else f"{a.heartbeat_age:.1f}s ago"
        rss = "-" if a.rss_bytes is None else f"{a.rss_bytes / 2**20:.0f}"
        cpu = "-" if a.cpu_percent is None else f"{a.cpu_percent:.0f}"
        print(f"    {a.name:<10} {a.pid or '-':>7} {'yes' if a.ready else 'no':<5} {a.restarts:>8}  {beat:>9} "
              f"{rss:>7} {cpu:>6}  {', '.join(str(c) for c in a.exit_codes) or '-'}")


async def _inspect(args: argparse.Namespace) -> int:
    from .storage import open_store

    settings = _settings(args)
    store = await open_store(settings.store, synchronous=settings.synchronous)
    try:
        flow = await store.get_flow(args.flow_id)
        if flow is None:
            raise FlowNotFoundError(args.flow_id)
        steps = await store.load_steps(args.flow_id)
    finally:
        await store.close()
    data = _flow_json(flow)
    data.update(attempt=flow.attempt, epoch=flow.epoch, owner=flow.owner, version=flow.version,
                args=_value(flow.args), parent_id=flow.parent_id)
    data["steps"] = [{"position": s.position, "name": s.name, "status": s.status, "attempt": s.attempt,
                      "result": _value(s.result) if s.result is not None else None,
                      "error": f"{s.error.type_name}: {s.error.message}" if s.error else None}
                     for s in steps]
    data["crashes"] = [_crash_json(c) for c in flow.crashes]
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return ExitCode.OK
    print(f"flow {flow.flow_id} ({flow.flow_type}) {flow.status}, attempt {flow.attempt}, epoch {flow.epoch}")
    print(f"  args: {data['args']!r}")
    for s in data["steps"]:
        outcome = repr(s["result"]) if s["error"] is None else s["error"]
        print(f"  step {s['position']:>3} {s['name']:<24} {s['status']:<8} attempt {s['attempt']}: {outcome}")
    for c in data["crashes"]:
        print(f"  crash at {c['at']}: {c['how']} ({c['cause']}) in step {c['position']}"
              f"{' (' + c['step'] + ')' if c['step'] else ''}, worker {c['worker_id']}"
              f"{', blamed (it ran alone)' if c['blamed'] else ''}")
    if flow.status == "COMPLETE":
        print(f"  result: {data['result']!r}")
    elif flow.error is not None:
        print(f"  error: {data['error']}")
    return ExitCode.OK


async def _signal(args: argparse.Namespace) -> int:
    from .storage import open_store

    if args.data_file is not None:
        payload = args.data_file.read()
    else:
        try:
            payload = None if args.data is None else json.loads(args.data)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--data is not valid JSON: {exc}") from None
    settings = _settings(args)
    store = await open_store(settings.store, synchronous=settings.synchronous)
    try:
        sent = await store.send_signal(args.name, codec.encode(payload))
    finally:
        await store.close()
    print(f"signal {args.name!r} " + ("sent" if sent else "was already sent; this one was ignored"))
    return ExitCode.OK if sent else ExitCode.ERROR


async def _cancel(args: argparse.Namespace) -> int:
    from .storage import open_store

    settings = _settings(args)
    store = await open_store(settings.store, synchronous=settings.synchronous)
    try:
        status = await store.cancel_flow(args.flow_id)
    finally:
        await store.close()
    if status == "RUNNING":
        print(f"flow {args.flow_id} is running: it stops at its next step boundary")
    else:
        print(f"flow {args.flow_id} is {status}")
    return ExitCode.OK


def _flow_json(flow: FlowRecord) -> dict[str, Any]:
    return {"flow_id": flow.flow_id, "class": flow.flow_type, "status": flow.status,
            "result": _value(flow.result) if flow.result is not None else None,
            "error": f"{flow.error.type_name}: {flow.error.message}" if flow.error else None}


def _crash_json(crash: Crash) -> dict[str, Any]:
    """One crash entry of a flow, as `inspect` shows it."""
    from .storage.crashes import how

    return {"at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(crash.at)) + f".{int(crash.at % 1 * 1000):03d}",
            "how": how(crash), "exit_code": crash.exit_code, "signal": crash.signal, "cause": crash.cause,
            "position": crash.position, "step": crash.step, "worker_id": crash.worker_id, "blamed": crash.alone}


def _value(data: bytes) -> Any:
    try:
        return codec.decode(data)
    except ErgonError as exc:  # a type from a module this process did not import
        return f"<{len(data)} bytes: {exc}>"


async def _chaos(args: argparse.Namespace) -> int:
    from .chaos import ProgressPrinter, chaos_run

    faults = None if args.faults is None else [f.strip() for f in args.faults.split(",") if f.strip()]
    printer = ProgressPrinter(sys.stderr)
    try:
        report = await chaos_run(args.module, args.flows, schedule=args.schedule, workers=args.workers,
                                 store=args.store, duration=args.duration, faults=faults, seed=args.seed,
                                 fault_plan=args.fault_plan, progress=printer, keep=args.keep)
    finally:
        printer.close()
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report.format())
    return ExitCode.OK if report.ok else ExitCode.VIOLATIONS


_COMMANDS = {"run": _run, "schedule": _schedule, "status": _status, "inspect": _inspect,
             "signal": _signal, "cancel": _cancel, "chaos": _chaos}
