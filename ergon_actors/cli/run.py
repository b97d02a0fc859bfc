"""`run`: a supervised pool serving modules' flow types, with a banner, progress and a summary."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
import click

from ..config import Settings, public_store_url
from ..executor.definition import definition_of
from ..storage.base import LogBase
from .common import ExitCode, Seconds, command, new_store, run_async, settings, style, version

__all__ = ["run"]

TERMINAL_COUNTS = ("COMPLETE", "FAILED", "CANCELLED")


@dataclass
class Progress:
    """What this run did so far, from the store's counts against those at its start."""

    start: dict[str, int]
    started: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, int]] = field(default_factory=list)  # (when, flows ended) for the rate

    def done(self, counts: dict[str, int]) -> dict[str, int]:
        return {k: max(counts.get(k, 0) - self.start.get(k, 0), 0) for k in TERMINAL_COUNTS}

    def line(self, counts: dict[str, int]) -> str:
        done = self.done(counts)
        now = time.monotonic()
        ended = sum(done.values())
        self.samples = [(t, n) for t, n in self.samples if now - t <= 10.0] + [(now, ended)]
        first_t, first_n = self.samples[0]
        rate = (ended - first_n) / (now - first_t) if now > first_t else 0.0
        failed = style(f"{done['FAILED']} failed", fg="red" if done["FAILED"] else None, err=True)
        return (f"{done['COMPLETE']} done, {failed}, {done['CANCELLED']} cancelled · "
                f"{counts.get('RUNNING', 0)} running, {counts.get('due', 0)} due, "
                f"{counts.get('SUSPENDED', 0)} waiting · {rate:.1f} flows/s · {_clock(now - self.started)}")

    def summary(self, counts: dict[str, int]) -> str:
        done = self.done(counts)
        took = time.monotonic() - self.started
        rate = sum(done.values()) / took if took > 0 else 0.0
        return (f"this run: {done['COMPLETE']} completed, {done['FAILED']} failed, {done['CANCELLED']} cancelled "
                f"in {took:.1f}s ({rate:.1f} flows/s)")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02}:{secs:02}"


class Reporter:
    """Prints progress to stderr: one line redrawn in place on a terminal, else a line every
    `every` seconds."""

    def __init__(self, store: LogBase, progress: Progress, every: float) -> None:
        self.store = store
        self.progress = progress
        self.live = sys.stderr.isatty()
        self.every = 0.5 if self.live else every
        self.shown = False

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            line = self.progress.line(await self.store.count_flows())
            if self.live:
                sys.stderr.write("\r\x1b[2K" + line)
                self.shown = True
            else:
                sys.stderr.write(f"progress: {line}\n")
            sys.stderr.flush()

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


def _banner(chosen: Settings, modules: tuple[str, ...], classes: list[type], served: str | None) -> str:
    types = ", ".join(sorted(definition_of(c).name for c in classes))
    code = f" · version {served}" if served is not None else ""
    return (style(f"ergon_actors {version()}", bold=True, err=True)
            + f" · store {public_store_url(chosen.store)} · {_count(chosen.workers, 'worker')}"
            + f" x {chosen.concurrency} flows"
            + f" · pid {os.getpid()}"
            + (f" · metrics http://{chosen.metrics_host}:{chosen.metrics_port}/metrics" if chosen.metrics_port else "")
            + f"\nserving {types} (from {', '.join(modules)}){code} · Ctrl-C drains")


@command(ExitCode.USAGE, ExitCode.GAVE_UP, ExitCode.NOT_FOUND, ExitCode.STORE, ExitCode.INTERRUPTED)
@click.argument("modules", nargs=-1, required=True, metavar="MODULE...")
@click.option("--workers", type=click.IntRange(min=1), envvar="ERGON_WORKERS", show_envvar=True,
              help="worker processes (default 2)")
@click.option("--concurrency", type=click.IntRange(min=1), envvar="ERGON_CONCURRENCY", show_envvar=True,
              help="flows per worker at once (default 256)")
@click.option("--until-idle", is_flag=True, help="exit 0 once no flow is running or due")
@click.option("--synchronous", type=click.Choice(("OFF", "NORMAL", "FULL", "EXTRA"), case_sensitive=False),
              envvar="ERGON_SYNCHRONOUS", show_envvar=True, help="SQLite durability (default FULL)")
@click.option("--lease", "lease_seconds", type=Seconds(), envvar="ERGON_LEASE_SECONDS", show_envvar=True,
              help="flow lease (default 15s)")
@click.option("--grace", type=Seconds(), envvar="ERGON_GRACE", show_envvar=True,
              help="how long steps in flight get to finish on shutdown (default 10s)")
@click.option("--metrics-port", type=click.IntRange(0, 65535), envvar="ERGON_METRICS_PORT", show_envvar=True,
              help="serve Prometheus metrics at http://HOST:PORT/metrics (default 0: off)")
@click.option("--metrics-host", envvar="ERGON_METRICS_HOST", show_envvar=True,
              help="the address metrics are served on (default 127.0.0.1)")
@click.option("--traces", metavar="EXPORTER", envvar="ERGON_TRACES", show_envvar=True,
              help="send OpenTelemetry spans of flows and steps to EXPORTER (otlp, console; needs the otel extra)")
@click.option("--queues", envvar="ERGON_QUEUES", show_envvar=True, metavar="NAME:LIMIT=N,...;...",
              help="override queues' limits, e.g. 'emails:concurrency=3,rate=10/1s' (docs/queues.md)")
@click.option("--retention", type=Seconds(), envvar="ERGON_RETENTION", show_envvar=True,
              help="delete ended flows this long after they ended, e.g. 30d (default 0: keep every flow)")
@click.option("--progress-every", type=Seconds(), default=10.0, show_default=True,
              help="how often progress is printed when stderr is not a terminal (a terminal gets a live line)")
@click.option("--version", "code_version", metavar="V", envvar="ERGON_VERSION", show_envvar=True,
              help="the code version served: only flows of V (or of none, then pinned to V) are run; "
                   "'auto': derived from the modules' source (default: every flow, none pinned)")
@click.option("--quiet", "-q", is_flag=True, help="no banner and no progress")
def run(modules: tuple[str, ...], workers: int | None, concurrency: int | None, until_idle: bool,
        synchronous: str | None, lease_seconds: float | None, grace: float | None, metrics_port: int | None,
        metrics_host: str | None, traces: str | None, queues: str | None, retention: float | None,
        progress_every: float, code_version: str | None,
        quiet: bool) -> int:
    """Run a supervised pool of workers serving the @flow_type classes of MODULE(s).

    Without --until-idle it runs until SIGINT/SIGTERM, which drains: steps in flight finish
    (within --grace), each flow stops at its next step boundary and is released. A second
    interrupt stops at once.
    """
    chosen = settings(workers=workers, concurrency=concurrency, synchronous=synchronous and synchronous.upper(),
                      lease_seconds=lease_seconds, grace=grace, metrics_port=metrics_port,
                      metrics_host=metrics_host, traces=traces, queues=queues, retention=retention,
                      version=code_version)
    return run_async(_run(chosen, modules, until_idle, progress_every, quiet))


async def _run(chosen: Settings, modules: tuple[str, ...], until_idle: bool, every: float, quiet: bool) -> int:
    from ..runtime import Supervisor, serve
    from ..runtime.version import resolve_version
    from .flows import discover

    opened: list[tuple[LogBase, Reporter]] = []
    tasks: list[asyncio.Task[None]] = []

    async def prepare() -> None:
        classes = discover(modules)  # fail here, with one clear message, rather than in every worker
        served = resolve_version(chosen, modules).version
        store = await new_store(chosen)  # likewise for a store that cannot be opened
        reporter = Reporter(store, Progress(await store.count_flows()), every)
        opened.append((store, reporter))
        if not quiet:
            click.echo(_banner(chosen, modules, classes, served), err=True)
            tasks.append(asyncio.ensure_future(reporter.run()))

    def notify(line: str) -> None:
        for _, reporter in opened:
            reporter.clear()
        click.echo(line, err=True)

    try:
        forced = await serve(Supervisor(list(modules), chosen), until_idle=until_idle, prepare=prepare,
                             notify=notify)
        # counted only after a clean stop: what stopped the supervisor (a broken store) is the error
        counts = await opened[0][0].count_flows() if opened else {}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for store, reporter in opened:
            reporter.clear()
            await store.close()
    if opened:
        click.echo(opened[0][1].progress.summary(counts))
        click.echo("flows: " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items())
                                                      if k != "due"))
    return ExitCode.INTERRUPTED if forced else ExitCode.OK
