"""Bad input gets a clear message and a documented exit code, and creates or loses nothing;
options, variables, durations, help, version and completion behave as documented."""

from __future__ import annotations

import json
from importlib import metadata

import pytest

from .conftest import FLOWS

pytestmark = pytest.mark.timeout(120)

ORDER = "examples.orders:OrderFlow"
A1 = '{"order_id": "A1", "amount": 12.5}'


@pytest.mark.parametrize("args", [
    ["status"], ["list"], ["inspect", "x"], ["signal", "n"], ["cancel", "x"], ["cancel", "--all", "--yes"],
    ["retry", "x"], ["fork", "x", "--from-step", "1"],
])
def test_commands_that_read_or_repair_never_create_a_store(cli, tmp_path, args):
    path = tmp_path / "typo.db"
    out = cli(*args, "--store", f"sqlite:///{path}")
    assert out.returncode == 5, out.stderr
    assert f"no SQLite store at '{path}' (nothing was created" in out.stderr
    assert not path.exists() and "Traceback" not in out.stderr


@pytest.mark.parametrize("args", [
    ["schedule", ORDER, "--args", A1], ["status"], ["list"], ["inspect", "x"], ["run", "examples.orders"],
    ["signal", "n"], ["cancel", "x"], ["retry", "x"], ["fork", "x", "--from-step", "0"],
])
def test_memory_store_is_refused_where_it_cannot_work(cli, args):
    out = cli(*args, "--store", "memory://")
    assert out.returncode == 2, out.stderr
    assert "a memory:// store lives inside one process" in out.stderr


@pytest.mark.parametrize("args, code, message", [
    (["schedule", ORDER, "--args", '{"order_id": "A", "amount": "x"}'], 2,
     "OrderFlow.amount: expected float, got str 'x'"),
    (["schedule", ORDER, "--args", '{"order_id": "A"}'], 2, "missing field(s) amount (its fields: order_id: str"),
    (["schedule", ORDER, "--args", "[1]"], 2, "must be a JSON object of its fields, got list"),
    (["schedule", ORDER, "--args", "{oops"], 2, "--args is not valid JSON"),
    (["schedule", ORDER, "--args", A1, "--delay", "soon"], 2, "not a duration: 'soon'"),
    (["schedule", "examples.orders"], 2, "write MODULE:Class"),
    (["schedule", "examples.orders:nope"], 4, "module 'examples.orders' has no class 'nope'"),
    (["schedule", "examples.orders:dataclass"], 4, "'examples.orders:dataclass' is a function, not a class"),
    (["schedule", f"{FLOWS}:Point", "--args", '{"x": 1, "y": 2}'], 4, "is not a flow: decorate it with @flow_type"),
    (["schedule", "tests.cli.broken_module:X"], 4,
     "cannot import module 'tests.cli.broken_module': RuntimeError: boom at import"),
    (["schedule", "examples.nowhere:X"], 4, "cannot import module 'examples.nowhere': ModuleNotFoundError"),
    (["run", "tests.cli.broken_module"], 4, "cannot import module 'tests.cli.broken_module': RuntimeError"),
    (["run", "examples.orders", "--lease", "forever"], 2, "not a duration: 'forever'"),
    (["run", "examples.orders", "--workers", "0"], 2, "0 is not in the range x>=1"),
    (["inspect", "x", "--module", "tests.cli.broken_module"], 4, "RuntimeError: boom at import"),
    (["status", "--store", "postgres://db"], 2, "scheme must be one of"),
    (["list", "--status", "done"], 2, "not a flow status: 'done' (one of pending, running"),
    (["list", "--since", "yesterday"], 2, "not a time: 'yesterday'"),
    (["list", "--limit", "0"], 2, "0 is not in the range 1<=x<=10000"),
    (["cancel"], 2, "name a FLOW_ID, or filters"),
    (["cancel", "x", "--status", "failed"], 2, "give a FLOW_ID or filters, not both"),
    (["fork", "x", "--from-step", "-1"], 2, "-1 is not in the range x>=0"),
    (["signal", "n", "--data", "{"], 2, "--data is not valid JSON"),
    (["nope"], 2, "No such command 'nope'"),
])
def test_bad_input_gets_a_named_exit_code_and_a_clear_message_and_creates_nothing(cli, tmp_path, args, code,
                                                                                  message):
    path = tmp_path / "flows.db"
    out = cli(*args, env={"ERGON_STORE": f"sqlite:///{path}"})
    assert out.returncode == code, (out.stdout, out.stderr)
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert not path.exists()


def test_missing_flows_are_not_found_in_an_existing_store(cli, tmp_path):
    store = f"sqlite:///{tmp_path}/flows.db"
    assert cli("schedule", ORDER, "--args", A1, "--id", "a1", "--store", store).returncode == 0
    for args in (["inspect", "x"], ["retry", "x"], ["cancel", "x"], ["fork", "x", "--from-step", "0"]):
        out = cli(*args, "--store", store)
        assert (out.returncode, out.stderr.strip()) == (4, "error: no flow with flow_id 'x'"), args
    assert cli("retry", "a1", "--store", store).returncode == 7  # PENDING: nothing to retry


def test_an_id_in_use_with_other_arguments_or_class_is_refused_and_the_flow_kept(cli, tmp_path):
    store = f"sqlite:///{tmp_path}/flows.db"
    assert cli("schedule", ORDER, "--args", A1, "--id", "a1", "--store", store).returncode == 0
    same = cli("schedule", ORDER, "--args", A1, "--id", "a1", "--store", store)
    assert same.returncode == 0 and same.stdout.split()[-1] == "a1" and "exists already" in same.stderr
    other = cli("schedule", ORDER, "--args", '{"order_id": "A1", "amount": 99}', "--id", "a1", "--store", store)
    assert other.returncode == 7 and "flow id 'a1' is taken: its flow has other arguments" in other.stderr
    kind = cli("schedule", f"{FLOWS}:Waiter", "--args", '{"name": "n"}', "--id", "a1", "--store", store)
    assert kind.returncode == 7 and "it is a OrderFlow" in kind.stderr
    kept = cli("schedule", ORDER, "--args", '{"order_id": "A1", "amount": 99}', "--id", "a1",
               "--if-exists", "keep", "--store", store)
    assert kept.returncode == 0 and "kept as it is" in kept.stderr
    shown = cli.json("inspect", "a1", "--json", "--store", store)
    assert shown["args"] == {"order_id": "A1", "amount": 12.5}
    assert len(cli.json("list", "--json", "--store", store)["flows"]) == 1


def test_durations_are_accepted_wherever_seconds_are(cli, tmp_path):
    store = f"sqlite:///{tmp_path}/flows.db"
    out = cli("schedule", ORDER, "--args", A1, "--id", "later", "--delay", "10m", "--store", store)
    assert out.returncode == 0, out.stderr
    shown = cli.json("inspect", "later", "--json", "--store", store)
    assert shown["waiting"]["kind"] == "start"
    from datetime import datetime
    created, ready = (datetime.fromisoformat(shown[k].replace("Z", "+00:00")) for k in ("created_at", "ready_at"))
    assert 590 < (ready - created).total_seconds() < 610
    idle = cli("run", "examples.orders", "--until-idle", "--quiet", "--lease", "1m", "--grace", "1.5",
               "--store", store, env={"ERGON_HANG_TIMEOUT": "30s"})
    assert idle.returncode == 0, idle.stderr
    bad = cli("status", "--store", store, env={"ERGON_LEASE_SECONDS": "soon"})
    assert bad.returncode == 2 and "ERGON_LEASE_SECONDS='soon' is not a valid duration" in bad.stderr


def test_options_go_before_or_after_the_command_and_variables_are_checked(cli, tmp_path):
    store = f"sqlite:///{tmp_path}/flows.db"
    cli("schedule", ORDER, "--args", A1, "--id", "a1", "--store", store)
    before = cli("--store", store, "list", "--json")
    after = cli("list", "--json", "--store", store)
    assert before.returncode == after.returncode == 0 and before.stdout == after.stdout
    overridden = cli("--store", f"sqlite:///{tmp_path}/other.db", "list", "--store", store, "--json")
    assert overridden.stdout == after.stdout  # the one after the command's name wins
    typo = cli("list", "--store", store, env={"ERGON_WORKRES": "4"})
    assert typo.returncode == 0
    assert "warning: ERGON_WORKRES is not a variable ergon_actors reads (did you mean ERGON_WORKERS?)" in typo.stderr
    bad = cli("run", "examples.orders", "--store", store, env={"ERGON_WORKERS": "many"})
    assert bad.returncode == 2 and "ERGON_WORKERS" in bad.stderr


@pytest.mark.parametrize("command, present, absent", [
    ("list", ["STORE", "USAGE", "ERGON_STORE", "ERGON_LOG_LEVEL"], ["GAVE_UP", "REFUSED", "INTERRUPTED"]),
    ("run", ["GAVE_UP", "INTERRUPTED", "NOT_FOUND", "ERGON_WORKERS", "ERGON_LEASE_SECONDS", "ERGON_GRACE"],
     ["REFUSED", "VIOLATIONS"]),
    ("cancel", ["REFUSED", "DECLINED", "NOT_FOUND"], ["GAVE_UP", "VIOLATIONS"]),
    ("chaos", ["VIOLATIONS"], ["REFUSED", "DECLINED"]),
])
def test_each_command_lists_the_exit_codes_it_can_return_and_its_variables(cli, command, present, absent):
    out = cli(command, "--help")
    assert out.returncode == 0
    for word in present:
        assert word in out.stdout, word
    for word in absent:
        assert word not in out.stdout, word


def test_version_and_shell_completion(cli):
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"ergon_actors {metadata.version('ergon-actors')}"
    script = cli("completion", "bash")
    assert script.returncode == 0 and "_ERGON_ACTORS_COMPLETE=bash_complete" in script.stdout
    words = cli(env={"_ERGON_ACTORS_COMPLETE": "bash_complete", "COMP_WORDS": "ergon-actors li", "COMP_CWORD": "1"})
    assert "plain,list" in words.stdout.splitlines()
    statuses = cli(env={"_ERGON_ACTORS_COMPLETE": "bash_complete", "COMP_WORDS": "ergon-actors list --status fa",
                        "COMP_CWORD": "3"})
    assert statuses.stdout.splitlines() == ["plain,failed"]


def test_json_output_is_lossless_and_module_decodes_user_types(cli, tmp_path):
    store = f"sqlite:///{tmp_path}/flows.db"
    args = {"when": "2025-01-31T12:00:00Z", "amount": "1.50", "tags": ["b", "a"], "point": {"x": 1, "y": 2},
            "colour": "red"}
    assert cli("schedule", f"{FLOWS}:Values", "--args", json.dumps(args), "--id", "v",
               "--store", store).returncode == 0
    assert cli("run", FLOWS, "--until-idle", "--quiet", "--store", store).returncode == 0
    shown = cli.json("inspect", "v", "--json", "--module", FLOWS, "--store", store)
    assert shown["result"] == {"bytes": {"$bytes": "AP8="}, "set": [1, 2, 3], "when": "2025-01-31T12:00:00+00:00",
                               "amount": "1.50", "id": "00000000-0000-0000-0000-000000000001",
                               "tuple": [1, "a"], "point": {"x": 1, "y": 2}, "colour": "red"}
    assert shown["args"]["tags"] == ["a", "b"] and shown["created_at"].endswith("Z")
    blind = cli.json("inspect", "v", "--json", "--store", store)  # without --module: named, not lost
    assert "refusing to decode" in blind["result"]["$undecodable"] and blind["result"]["$bytes"]
    status = cli.json("status", "--json", "--module", FLOWS, "--store", store)
    assert status["flows"][0]["result"]["amount"] == "1.50"
