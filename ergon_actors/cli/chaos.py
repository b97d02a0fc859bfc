"""`chaos`: run a module's flows under faults, then verify the journal and the ledger."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import ops
from .common import ExitCode, Seconds, command, echo_json, options, run_async

__all__ = ["chaos"]


@command(ExitCode.USAGE, ExitCode.NOT_FOUND, ExitCode.STORE, ExitCode.VIOLATIONS)
@click.argument("module", metavar="MODULE")
@click.option("--flows", type=click.IntRange(min=1), default=50, show_default=True, metavar="N",
              help="flows to run, built by MODULE.chaos_flows(N, SEED)")
@click.option("--schedule", metavar="MODULE:factory", help="another factory, called factory(N, SEED)")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="worker processes (of each host)")
@click.option("--hosts", type=click.IntRange(min=1), default=1, show_default=True,
              help="independent supervisor trees on the one store; 2 or more adds kill-host and stop-host")
@click.option("--duration", type=Seconds(), help="how long faults go on (default 0.45s per flow, 10s to 90s)")
@click.option("--faults", metavar="LIST", help="comma-separated, of kill-worker, stop-worker, kill-journal, "
              "stop-journal, kill-supervisor, kill-redis, stall-redis, disk-full, kill-host, stop-host "
              "(default: all the store and --hosts allow)")
@click.option("--seed", type=int, default=0, show_default=True, help="seeds the fault schedule and the flows")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option("--keep", is_flag=True, help="keep the store, ledger and logs (kept anyway when a promise was broken)")
@click.option("--fault-plan", default="", metavar="PLAN",
              help="test only: break the journal on purpose (journal:skip_fencing, journal:ack_before_commit=N) "
                   "to see the verifier catch it")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="where the report is saved as JSON for the dashboard (default: ergon-chaos-reports in the "
                   "temp folder; the newest 50 are kept)")
def chaos(module: str, flows: int, schedule: str | None, workers: int, hosts: int, duration: float | None,
          faults: str | None, seed: int, as_json: bool, keep: bool, fault_plan: str, report_dir: Path | None) -> int:
    """Run MODULE's flows under a supervisor while faults hit it, then verify the journal and the
    side-effect ledger (docs/chaos.md).

    The store is a temporary SQLite file unless --store names one; --store redis starts (and
    kills) a redis-server of its own.
    """
    from ..chaos import ProgressPrinter, chaos_run
    from ..chaos.reports import save_report

    chosen = None if faults is None else [f.strip() for f in faults.split(",") if f.strip()]
    printer = ProgressPrinter(sys.stderr)
    try:
        report = run_async(chaos_run(module, flows, schedule=schedule, workers=workers, store=options().store,
                                     duration=duration, faults=chosen, seed=seed, fault_plan=fault_plan,
                                     progress=printer, keep=keep, hosts=hosts))
    finally:
        printer.close()
    save_report(report, report_dir)
    if as_json:
        echo_json(ops.to_json(report.to_dict()))
    else:
        click.echo(report.format())
    return ExitCode.OK if report.ok else ExitCode.VIOLATIONS
