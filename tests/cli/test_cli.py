"""The command line, as a user runs it: real processes on a real SQLite file."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ergon_actors", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=90, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_schedule_run_status_inspect(tmp_path):
    store = f"sqlite:///{tmp_path}/flows.db"
    out = cli("schedule", "examples.orders:OrderFlow", "--args", '{"order_id": "A1", "amount": 12.5}',
              "--store", store)
    assert out.returncode == 0, out.stderr
    flow_id = out.stdout.strip().splitlines()[-1]
    again = cli("schedule", "examples.orders:OrderFlow", "--args", '{"order_id": "A1", "amount": 12.5}',
                "--id", flow_id, "--store", store)
    assert again.stdout.strip().splitlines()[-1] == flow_id  # same id and arguments: the same flow
    other = cli("schedule", "examples.orders:OrderFlow", "--args", '{"order_id": "A1", "amount": 99}',
                "--id", flow_id, "--store", store)
    assert other.returncode == 7 and "is taken: its flow has other arguments" in other.stderr

    ran = cli("run", "examples.orders", "--store", store, "--workers", "1", "--until-idle")
    assert ran.returncode == 0, ran.stderr
    assert "complete 1" in ran.stdout

    status = json.loads(cli("status", "--store", store, "--json").stdout)
    assert status["flows"] == [{"flow_id": flow_id, "class": "OrderFlow", "status": "COMPLETE",
                                "result": "shipped-A1", "error": None}]
    text = cli("status", "--store", store).stdout
    assert "complete   1" in text

    shown = json.loads(cli("inspect", flow_id, "--store", store, "--json").stdout)
    assert [s["name"] for s in shown["steps"]] == ["reserve", "charge", "ship"]
    assert shown["steps"][1]["result"] == "receipt-A1-12.50" and shown["args"]["amount"] == 12.5
    assert "step   2 ship" in cli("inspect", flow_id, "--store", store).stdout


def test_store_defaults_to_ergon_store_variable(tmp_path):
    env = {"ERGON_STORE": f"sqlite:///{tmp_path}/env.db"}
    out = cli("schedule", "examples.orders:OrderFlow", "--args", '{"order_id": "B", "amount": 1}', env=env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "env.db").exists()


@pytest.mark.parametrize("args, code, message", [
    (["schedule", "examples.orders:Nope"], 4, "has no class 'Nope'"),
    (["schedule", "examples.nowhere:X"], 4, "examples.nowhere"),
    (["schedule", "examples.orders"], 2, "write MODULE:Class"),
    (["schedule", "examples.orders:OrderFlow", "--args", "{oops"], 2, "not valid JSON"),
    (["schedule", "examples.orders:OrderFlow", "--args", '{"x": 1}'], 2, "OrderFlow: unknown field(s) x"),
    (["status", "--store", "postgres://db"], 2, "scheme must be one of"),
    (["status", "--store", "sqlite://"], 2, "sqlite:///relative.db"),
    (["inspect", "missing", "--store", "memory://"], 2, "a memory:// store lives inside one process"),
    (["run", "examples.quickstart_missing"], 4, "examples.quickstart_missing"),
])
def test_bad_input_gets_a_named_exit_code_and_a_clear_message(tmp_path, args, code, message):
    out = cli(*args, env={"ERGON_STORE": f"sqlite:///{tmp_path}/x.db"})
    assert out.returncode == code, (out.stdout, out.stderr)
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_a_foreign_sqlite_file_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (name TEXT)")
        db.execute("INSERT INTO users VALUES ('ada')")
    before = path.read_bytes()
    out = cli("status", "--store", f"sqlite:///{path}")
    assert out.returncode == 5 and "another application" in out.stderr
    assert path.read_bytes() == before


def test_help_documents_exit_codes():
    out = cli("--help")
    assert out.returncode == 0
    for name in ("OK", "USAGE", "GAVE_UP", "NOT_FOUND", "STORE"):
        assert name in out.stdout


def test_until_idle_names_due_flows_that_no_worker_serves(tmp_path):
    store = f"sqlite:///{tmp_path}/flows.db"
    cli("schedule", "examples.orders:OrderFlow", "--args", '{"order_id": "A", "amount": 1}', "--store", store)
    out = cli("run", "examples.demo", "--store", store, "--workers", "1", "--until-idle")
    assert out.returncode == 4, out.stderr
    assert "'OrderFlow' are due but no worker serves that type; served here: DemoOrder" in out.stderr
