"""Prometheus metrics of a real `run`: scraped over HTTP while flows complete and a worker is killed."""

import json
import os
import signal
import socket
import urllib.error
import urllib.request

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import read_ledger, run, wait_until
from tests.runtime.conftest import FLOWS
from tests.runtime.flows import LedgerFlow
from tests.runtime.test_faults import _flows, _schedule

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> dict[tuple, float] | None:
    """{(sample name, sorted labels): value} from /metrics, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict | None, name: str, **labels: str) -> float:
    if samples is None:
        return -1.0
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_as_flows_complete_and_a_worker_is_killed(tmp_path, cli_logged):
    ledger = str(tmp_path / "ledger")
    db = tmp_path / "journal.db"
    flows = [LedgerFlow(f"f{i}", ledger) for i in range(5)] + [LedgerFlow("held", ledger, "hang-once:1")]
    run(_schedule(db, flows))
    port = free_port()
    proc = cli_logged("run", FLOWS, "--store", f"sqlite:///{db}", "--workers", "2", "--metrics-port", str(port))

    def before_kill():
        samples = scrape(port)
        done = (value(samples, "ergon_flows", status="COMPLETE") == 5
                and value(samples, "ergon_flows_ended_total", flow_type="LedgerFlow", status="COMPLETE") == 5
                and value(samples, "ergon_steps_completed_total") == 16  # 5 x 3, and the held flow's first
                and value(samples, "ergon_steps_started_total") == 17    # and the step it hangs in
                and value(samples, "ergon_journal_commits_total") > 0)   # each actor's figures come from its
        return samples if done else None                                 # last heartbeat

    first = wait_until(before_kill, timeout=60, interval=0.2, what=f"5 flows done in /metrics; {proc.stderr_text()}")
    assert value(first, "ergon_flows", status="RUNNING") == 1
    assert value(first, "ergon_step_duration_seconds_count") == 16
    assert value(first, "ergon_flow_duration_seconds_count") == 5
    assert value(first, "ergon_journal_commit_seconds_count") == value(first, "ergon_journal_commits_total")
    assert value(first, "ergon_restarts_total", actor="worker-0", cause="signal") == 0
    assert value(first, "ergon_worker_crashes_total") == 0
    assert value(first, "ergon_actor_rss_bytes", actor="worker-0", role="worker") > 10 * 2**20

    pid = next(e["pid"] for e in read_ledger(ledger) if e["key"] == "held" and e["pos"] == 1)
    worker = psutil.Process(pid)
    assert worker.ppid() == proc.pid
    name = next(arg for arg in worker.cmdline() if "#" in arg).partition("#")[0]  # worker-N#1
    os.kill(pid, signal.SIGKILL)

    def after_kill():
        samples = scrape(port)
        done = (value(samples, "ergon_restarts_total", actor=name, cause="signal") == 1
                and value(samples, "ergon_worker_crashes_total") == 1
                and value(samples, "ergon_flows", status="COMPLETE") == 6
                and value(samples, "ergon_actor_up", actor=name, role="worker") == 1
                and value(samples, "ergon_flows_ended_total", flow_type="LedgerFlow", status="COMPLETE") == 6)
        return samples if done else None

    second = wait_until(after_kill, timeout=60, interval=0.2, what=f"the restart in /metrics; {proc.stderr_text()}")
    # counts survive the killed process: up to its last heartbeat they stay in the totals
    for counter in ("ergon_steps_completed_total", "ergon_steps_started_total", "ergon_step_duration_seconds_count",
                    "ergon_journal_commits_total", "ergon_flow_runs_started_total"):
        assert value(second, counter) >= value(first, counter), counter
    assert value(second, "ergon_steps_completed_total") >= 18  # the held flow's last two steps ran after it
    assert value(second, "ergon_flows", status="RUNNING") == 0
    assert value(second, "ergon_flows_due") == 0

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0, proc.stderr_text()
    assert {f.status for f in run(_flows(db))} == {"COMPLETE"}
    assert scrape(port) is None  # the server closed with the supervisor


def spans_in(text: str) -> list[dict]:
    """The spans the console exporter printed (indented JSON objects) among other output."""
    decoder, spans, at = json.JSONDecoder(), [], text.find('{\n    "name"')
    while at >= 0:
        span, end = decoder.raw_decode(text, at)
        spans.append(span)
        at = text.find('{\n    "name"', end)
    return spans


def test_a_run_with_traces_exports_a_span_per_flow_run_and_per_step(tmp_path, cli):
    ledger = str(tmp_path / "ledger")
    db = tmp_path / "journal.db"
    run(_schedule(db, [LedgerFlow(f"f{i}", ledger) for i in range(2)]))
    proc = cli("run", FLOWS, "--store", f"sqlite:///{db}", "--workers", "1", "--until-idle", "-q",
               "--traces", "console")
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    spans = spans_in(out)
    runs = [s for s in spans if s["name"] == "flow LedgerFlow"]
    steps = [s for s in spans if s["name"] == "step work"]
    assert sorted(s["attributes"]["ergon.flow_id"] for s in runs) == ["f0", "f1"]
    assert sorted((s["attributes"]["ergon.flow_id"], s["attributes"]["ergon.position"]) for s in steps) == [
        (f"f{i}", p) for i in range(2) for p in range(3)]
    for span in runs + steps:
        assert span["attributes"]["ergon.worker_id"].endswith("-worker-0.1")
        assert span["attributes"]["ergon.attempt"] == 1
        assert span["resource"]["attributes"]["service.name"] == "ergon_actors"
    assert {s["attributes"]["ergon.outcome"] for s in runs} == {"COMPLETE"}
    parents = {s["context"]["span_id"]: s["attributes"]["ergon.flow_id"] for s in runs}
    assert all(parents[s["parent_id"]] == s["attributes"]["ergon.flow_id"] for s in steps)


def test_an_exporter_that_is_not_installed_fails_the_start_saying_so(tmp_path, cli):
    proc = cli("run", FLOWS, "--store", f"sqlite:///{tmp_path}/journal.db", "--workers", "1", "--until-idle",
               "--traces", "no-such-exporter")
    _, err = proc.communicate(timeout=90)
    assert proc.returncode != 0
    assert "no OpenTelemetry span exporter named 'no-such-exporter' is installed (installed: console" in err


def test_a_metrics_port_in_use_fails_the_run_before_any_process_starts(tmp_path, cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = cli("run", FLOWS, "--store", f"sqlite:///{tmp_path}/journal.db", "--metrics-port", str(port))
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert f"cannot serve metrics on 127.0.0.1:{port}" in err
