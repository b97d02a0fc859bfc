"""The metrics endpoint over real sockets: the text and OpenMetrics formats, what it refuses, a
store that does not answer, and a port already in use."""

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ergon_actors.errors import ConfigError, StoreUnavailableError
from ergon_actors.runtime.messages import JournalStats, WorkerStats
from ergon_actors.runtime.metrics import MAX_REQUEST, MetricsServer
from ergon_actors.runtime.snapshot import ActorInfo, Snapshot
from tests.helpers import run

pytestmark = pytest.mark.timeout(20)


def snapshot() -> Snapshot:
    worker = ActorInfo("worker-0", "worker", 10, 2, "w", True, True, 1, (-9,), 0.1, WorkerStats(2), 5000, 1.5,
                       WorkerStats(2, 7, steps_completed=11), {"signal": 1})
    journal = ActorInfo("journal", "journal", 11, 1, None, True, True, 0, (), 0.1, JournalStats(3, 9),
                        None, None, JournalStats(3, 9, fenced=2), {})
    return Snapshot(1, "h", "memory://", 100.0, "running", "/tmp/x", 4, (worker, journal), crashes=1)


async def ask(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def serving(count) -> tuple[MetricsServer, int]:
    server = MetricsServer(snapshot, count)
    await server.start("127.0.0.1", 0)
    return server, server._server.sockets[0].getsockname()[1]


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_endpoint_serves_the_snapshot_and_the_store_counts():
    asked = []

    async def count():
        asked.append(1)
        return {"COMPLETE": 5, "RUNNING": 2, "due": 3}

    async def body():
        server, port = await serving(count)
        try:
            first = await ask(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            again = await ask(port, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")
            open_metrics = await ask(port, b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; "
                                           b"version=1.0.0\r\n\r\n")
        finally:
            server.close()
        return first, again, open_metrics

    first, again, open_metrics = run(body())
    head, _, text = first.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200 OK") and "text/plain; version=0.0.4" in head
    got = samples(text)
    assert got[("ergon_flows", (("status", "COMPLETE"),))] == 5
    assert got[("ergon_flows", (("status", "PENDING"),))] == 0
    assert got[("ergon_flows_due", ())] == 3
    assert got[("ergon_steps_completed_total", ())] == 11
    assert got[("ergon_flows_running", ())] == 2
    assert got[("ergon_fenced_writes_total", ())] == 2
    assert got[("ergon_restarts_total", (("actor", "worker-0"), ("cause", "signal")))] == 1
    assert got[("ergon_dropped_messages_total", (("receiver", "supervisor"),))] == 4
    assert got[("ergon_actor_rss_bytes", (("actor", "worker-0"), ("role", "worker")))] == 5000
    assert got[("ergon_worker_crashes_total", ())] == 1
    assert again.startswith(b"HTTP/1.1 200 OK")
    assert len(asked) == 1  # the later scrapes within COUNTS_MAX_AGE reused the counts
    assert b"application/openmetrics-text" in open_metrics and open_metrics.rstrip().endswith(b"# EOF")


@pytest.mark.parametrize("request_, status", [
    (b"GET / HTTP/1.1\r\n\r\n", b"404"),
    (b"GET /metricsx HTTP/1.1\r\n\r\n", b"404"),
    (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"405"),
    (b"\x00\xff garbage\r\n\r\n", b"404"),
    (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * MAX_REQUEST + b"\r\n\r\n", b""),  # too long: closed unanswered
    (b"GET /metrics HTTP/1.1\r\n", b""),  # cut short: closed unanswered
])
def test_anything_but_a_get_of_metrics_is_refused(request_, status):
    async def count():
        return {}

    async def body():
        server, port = await serving(count)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request_)
            writer.write_eof()  # a request cut short ends here
            answer = await reader.read()
            writer.close()
            return answer
        finally:
            server.close()

    answer = run(body())
    assert answer[9:12] == status if status else answer == b""


def test_a_store_that_does_not_answer_leaves_out_only_the_flow_counts():
    async def count():
        raise StoreUnavailableError("the store is down")

    async def body():
        server, port = await serving(count)
        try:
            return await ask(port, b"GET /metrics HTTP/1.1\r\n\r\n")
        finally:
            server.close()

    got = samples(run(body()).decode().partition("\r\n\r\n")[2])
    assert ("ergon_steps_completed_total", ()) in got
    assert not [key for key in got if key[0] == "ergon_flows"]


def test_a_port_in_use_is_a_clear_error():
    async def body():
        async def count():
            return {}
        server, port = await serving(count)
        try:
            with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
                await MetricsServer(snapshot, count).start("127.0.0.1", port)
        finally:
            server.close()

    run(body())


def test_neither_prometheus_nor_opentelemetry_is_imported_when_off():
    import subprocess
    import sys

    code = ("import sys, ergon_actors, ergon_actors.cli, ergon_actors.runtime.worker, ergon_actors.runtime.journal\n"
            "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(('prometheus', 'opentelemetry'))}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=15, check=True)
    assert out.stdout.strip() == "[]"
