"""Prometheus metrics of a supervisor: its status snapshot and the store's flow counts, as
metric families for `prometheus_client`'s encoders.

Nothing is counted here: each scrape reads the snapshot (the actors' figures from their last
heartbeats, summed over their incarnations) and the store's counts, asked for at most once per
COUNTS_MAX_AGE seconds. docs/metrics.md lists every metric.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import replace

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from ..core import FlowStatus
from ..errors import ConfigError, ErgonError
from .messages import Buckets, JournalStats, WorkerStats
from .snapshot import ActorInfo, Snapshot
from .stats import BATCH_COMMANDS, COMMIT_SECONDS, FLOW_SECONDS, STEP_SECONDS, add

__all__ = ["SnapshotCollector", "MetricsServer", "COUNTS_MAX_AGE"]

log = logging.getLogger(__name__)

COUNTS_MAX_AGE = 5.0  # seconds the store's flow counts are reused for before a scrape asks again
COUNTS_TIMEOUT = 5.0  # seconds a scrape waits for the store's counts before it goes without them
MAX_REQUEST = 16384   # bytes of a request's line and headers
READ_TIMEOUT = 10.0   # seconds a client has to send its request


class SnapshotCollector(Collector):
    """The metric families of one snapshot and one set of the store's flow counts."""

    def __init__(self, snapshot: Snapshot, counts: dict[str, int] | None) -> None:
        self.snapshot = snapshot
        self.counts = counts

    def describe(self) -> Iterable[Metric]:
        return []  # collected anew at each scrape, nothing to register ahead

    def collect(self) -> Iterator[Metric]:
        yield from self._store()
        yield from self._workers(_total(a for a in self.snapshot.actors if a.role == "worker"))
        journal = next((a.totals for a in self.snapshot.actors if a.role == "journal"), None)
        yield from self._journal(journal if isinstance(journal, JournalStats) else JournalStats())
        yield from self._actors()

    def _store(self) -> Iterator[Metric]:
        if self.counts is None:
            return  # not counted yet, or the store did not answer
        flows = GaugeMetricFamily("ergon_flows", "Flows in the store, by status", labels=["status"])
        for status in FlowStatus:
            flows.add_metric([status.value], self.counts.get(status.value, 0))
        yield flows
        yield GaugeMetricFamily("ergon_flows_due", "Flows runnable now and not yet claimed: the queue depth",
                                value=self.counts.get("due", 0))
        yield GaugeMetricFamily("ergon_flows_quarantined", "Flows in the store FAILED as poison",
                                value=self.counts.get("quarantined", 0))

    def _workers(self, w: WorkerStats) -> Iterator[Metric]:
        ended = CounterMetricFamily("ergon_flows_ended", "Flows that ended in this supervisor's workers, by type "
                                    "and status (COMPLETE, FAILED, CANCELLED)", labels=["flow_type", "status"])
        for item in sorted(w.ended, key=lambda i: (i.flow_type, i.status)):
            ended.add_metric([item.flow_type, item.status], item.count)
        yield ended
        yield GaugeMetricFamily("ergon_flows_running", "Flows running in this supervisor's workers now",
                                value=w.running)
        yield CounterMetricFamily("ergon_flow_runs_started", "Runs of claimed flows started (a flow runs again "
                                  "after each suspension or crash)", value=w.started)
        yield CounterMetricFamily("ergon_flow_runs_abandoned", "Runs given up after a refused (fenced) write or "
                                  "a failed journal call", value=w.abandoned)
        yield CounterMetricFamily("ergon_steps_started", "Step bodies started (replayed steps run none)",
                                  value=w.steps_started)
        yield CounterMetricFamily("ergon_steps_completed", "Step bodies that returned", value=w.steps_completed)
        yield CounterMetricFamily("ergon_steps_failed", "Step bodies that raised (a retry may follow)",
                                  value=w.steps_failed)
        yield _histogram("ergon_step_duration_seconds", "How long step bodies ran", STEP_SECONDS, w.step_seconds)
        yield _histogram("ergon_flow_duration_seconds", "From a flow's creation to its end, for flows that ended "
                         "in this supervisor's workers", FLOW_SECONDS, w.flow_seconds)
        yield CounterMetricFamily("ergon_journal_requests_resent", "Journal requests sent again after "
                                  "resend_after seconds without an answer", value=w.resent)

    def _journal(self, j: JournalStats) -> Iterator[Metric]:
        yield CounterMetricFamily("ergon_journal_commits", "Transactions the journal committed", value=j.commits)
        yield CounterMetricFamily("ergon_journal_commands", "Commands the journal committed", value=j.commands)
        yield _histogram("ergon_journal_commit_seconds", "How long the store took to commit a batch (a store "
                         "outage's wait included)", COMMIT_SECONDS, j.commit_seconds)
        yield _histogram("ergon_journal_commands_per_commit", "Commands per commit", BATCH_COMMANDS,
                         j.batch_commands)
        yield CounterMetricFamily("ergon_fenced_writes", "Writes refused for a stale lease epoch", value=j.fenced)
        yield GaugeMetricFamily("ergon_store_up", "1 while the journal's commits succeed, 0 during a store "
                                "outage", value=1 if j.store_ok else 0)
        dropped = CounterMetricFamily("ergon_dropped_messages", "Malformed messages dropped, by receiver",
                                      labels=["receiver"])
        dropped.add_metric(["supervisor"], self.snapshot.dropped)
        dropped.add_metric(["journal"], j.malformed)
        workers = _total(a for a in self.snapshot.actors if a.role == "worker")
        dropped.add_metric(["worker"], workers.dropped)
        yield dropped

    def _actors(self) -> Iterator[Metric]:
        snap = self.snapshot
        restarts = CounterMetricFamily("ergon_restarts", "Actor restarts, by actor and cause",
                                       labels=["actor", "cause"])
        up = GaugeMetricFamily("ergon_actor_up", "1 while the actor's process runs and has sent READY",
                               labels=["actor", "role"])
        rss = GaugeMetricFamily("ergon_actor_rss_bytes", "Resident memory of the actor's process",
                                labels=["actor", "role"])
        cpu = GaugeMetricFamily("ergon_actor_cpu_percent", "CPU use of the actor's process over the last "
                                "heartbeat interval", labels=["actor", "role"])
        age = GaugeMetricFamily("ergon_actor_heartbeat_age_seconds", "Seconds since the actor was last heard from",
                                labels=["actor", "role"])
        for a in snap.actors:
            for cause, n in sorted(a.causes.items()):
                restarts.add_metric([a.name, cause], n)
            up.add_metric([a.name, a.role], 1 if a.ready else 0)
            if a.rss_bytes is not None:
                rss.add_metric([a.name, a.role], a.rss_bytes)
            if a.cpu_percent is not None:
                cpu.add_metric([a.name, a.role], a.cpu_percent)
            if a.heartbeat_age is not None:
                age.add_metric([a.name, a.role], a.heartbeat_age)
        yield from (restarts, up, rss, cpu, age)
        yield CounterMetricFamily("ergon_worker_crashes", "Worker deaths recorded on the flows they held",
                                  value=snap.crashes)
        yield CounterMetricFamily("ergon_quarantines", "Flows quarantined (FAILED as poison) by this supervisor",
                                  value=snap.quarantined)
        yield CounterMetricFamily("ergon_recycles", "Workers drained and replaced for max_rss or max_flows",
                                  value=snap.recycles)
        yield GaugeMetricFamily("ergon_supervisor_start_time_seconds", "When the supervisor started (Unix time)",
                                value=snap.started)


def _total(actors: Iterable[ActorInfo]) -> WorkerStats:
    """The workers' counts summed (their running flows too)."""
    totals = [a.totals for a in actors if isinstance(a.totals, WorkerStats)]
    if not totals:
        return WorkerStats()
    summed: WorkerStats | JournalStats = totals[0]
    for more in totals[1:]:
        summed = add(summed, more)
    assert isinstance(summed, WorkerStats)
    return replace(summed, running=sum(t.running for t in totals))


def _histogram(name: str, doc: str, bounds: tuple[float, ...], buckets: Buckets) -> HistogramMetricFamily:
    counts = buckets.counts if len(buckets.counts) == len(bounds) + 1 else (0,) * (len(bounds) + 1)
    cumulative, running = [], 0
    for bound, n in zip((*(f"{b:g}" for b in bounds), "+Inf"), counts, strict=True):
        running += n
        cumulative.append((bound, float(running)))
    return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=buckets.total)


class MetricsServer:
    """Serves `GET /metrics` over HTTP on the event loop: the snapshot `snapshot()` returns and the
    flow counts `count()` returns (awaited at most once per COUNTS_MAX_AGE seconds)."""

    def __init__(self, snapshot: Callable[[], Snapshot], count: Callable[[], Awaitable[dict[str, int]]]) -> None:
        self._snapshot = snapshot
        self._count = count
        self._counts: dict[str, int] | None = None
        self._counted = -COUNTS_MAX_AGE
        self._counting = asyncio.Lock()
        self._server: asyncio.Server | None = None
        self.address = ""

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port. Raises ConfigError if that address cannot be bound."""
        try:
            self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_REQUEST)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
        self.address = f"http://{host}:{port}/metrics"
        log.info("serving metrics at %s", self.address)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def render(self, accept: str = "") -> tuple[bytes, str]:
        """The metrics as the client's Accept header asks (text or OpenMetrics), and their content type."""
        await self._refresh_counts()
        encoder, content_type = choose_encoder(accept)
        return encoder(SnapshotCollector(self._snapshot(), self._counts)), content_type

    async def _refresh_counts(self) -> None:
        async with self._counting:
            if time.monotonic() - self._counted < COUNTS_MAX_AGE:
                return
            try:
                self._counts = await asyncio.wait_for(self._count(), COUNTS_TIMEOUT)
            except (TimeoutError, ErgonError) as exc:
                log.warning("metrics go without the store's flow counts: %s", exc or type(exc).__name__)
                self._counts = None
            self._counted = time.monotonic()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body, content_type = await self._answer(head.decode("latin-1"))
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a client that sent no whole request in time, too much, or went away
        finally:
            writer.close()

    async def _answer(self, head: str) -> tuple[str, bytes, str]:
        request, *lines = head.split("\r\n")
        method, _, rest = request.partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        text = "text/plain; charset=utf-8"
        if path != "/metrics":
            return "404 Not Found", b"metrics are at /metrics\n", text
        if method != "GET":
            return "405 Method Not Allowed", b"use GET\n", text
        accept = next((v.strip() for k, _, v in (line.partition(":") for line in lines)
                       if k.strip().lower() == "accept"), "")
        body, content_type = await self.render(accept)
        return "200 OK", body, content_type
