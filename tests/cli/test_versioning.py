"""Deploying new code with real `run` processes: a flow started on version 1 resumes on version 2
(migrated, its change guarded by patched()), a migration without the patch fails naming it, and
two versions served at once on one store never run each other's flows."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from ergon_actors.core import FlowRecord
from ergon_actors.storage import open_store
from tests.helpers import assert_gone, run

from .conftest import ROOT, Cli, poll

pytestmark = pytest.mark.timeout(180)

SOURCE = '''
import asyncio
import os
from dataclasses import dataclass

from ergon_actors import flow, flow_type, patched, sleep, step

VERSION = {version!r}
DIR = os.environ["VERSION_TEST_DIR"]


def note(order: str, what: str) -> None:
    with open(os.path.join(DIR, "ledger.txt"), "a") as ledger:
        ledger.write(f"{{order}} {{what}} {{VERSION}} {{os.getpid()}}\\n")


@dataclass
@flow_type(name="Shipment")
class Shipment:
    order: str

    @step
    async def check_fraud(self) -> str:
        note(self.order, "check_fraud")
        return "checked"

    @step
    async def pack(self) -> str:
        note(self.order, "pack")
        return "packed"

    @step
    async def wait_truck(self) -> str:
        note(self.order, "wait_truck")
        while not os.path.exists(os.path.join(DIR, "go-" + self.order)):
            await asyncio.sleep(0.05)
        return "loaded"

    @step
    async def ship(self) -> str:
        note(self.order, "ship")
        return "shipped"

    @flow
    async def run(self) -> str:
        done = []
{fraud}
        done.append(await self.pack())
        await sleep(0.2)
        done.append(await self.wait_truck())
        done.append(await self.ship())
        return VERSION + ":" + ",".join(done)
'''
FRAUD = {
    "v1": "",  # the old code: no fraud check
    "v2": "        if await patched('fraud-check'):\n            done.append(await self.check_fraud())",
    "v2-unpatched": "        done.append(await self.check_fraud())",
}


class Deploy:
    """The code versions as directories of a module `shipflows`, and the runs serving them."""

    def __init__(self, cli: Cli, tmp_path: Path, store: str) -> None:
        self.cli, self.store, self.dir = cli, store, tmp_path / "shared"
        self.dir.mkdir()
        self.code: dict[str, Path] = {}
        for name, fraud in FRAUD.items():
            folder = tmp_path / name
            folder.mkdir()
            version = name.partition("-")[0].lstrip("v")
            (folder / "shipflows.py").write_text(SOURCE.format(version=version, fraud=fraud))
            self.code[name] = folder

    def env(self, code: str) -> dict[str, str]:
        return {"PYTHONPATH": f"{self.code[code]}:{ROOT}", "VERSION_TEST_DIR": str(self.dir)}

    def start(self, code: str, version: str, name: str, lease: str = "15s") -> Any:
        return self.cli.start("run", "shipflows", "--store", self.store, "--version", version, "--workers", "1",
                              "--lease", lease, "-q", env=self.env(code), name=name)

    def schedule(self, *orders: str) -> None:
        for order in orders:
            out = self.cli("schedule", "shipflows:Shipment", "--args", f'{{"order": "{order}"}}', "--id", order,
                           "--store", self.store, env=self.env("v1"))
            assert out.returncode == 0, out.stderr

    def go(self, *orders: str) -> None:
        for order in orders:
            (self.dir / f"go-{order}").touch()

    def ledger(self) -> list[tuple[str, str, str]]:
        """(order, step, version of the code that ran it) per step started, in order."""
        path = self.dir / "ledger.txt"
        lines = path.read_text().splitlines() if path.exists() else []
        return [(order, what, version) for order, what, version, _ in (line.split() for line in lines)]

    def steps(self, order: str) -> list[tuple[str, str]]:
        return [(what, version) for o, what, version in self.ledger() if o == order]

    def flows(self) -> dict[str, FlowRecord]:
        async def read() -> dict[str, FlowRecord]:
            store = await open_store(self.store)
            try:
                return {f.flow_id: f for f in await store.list_flows(limit=10_000)}
            finally:
                await store.close()
        return run(read())

    def wait_ended(self, *orders: str) -> dict[str, FlowRecord]:
        def ended() -> dict[str, FlowRecord] | None:
            flows = self.flows()
            done = all(o in flows and flows[o].status in ("COMPLETE", "FAILED") for o in orders)
            return flows if done else None
        found: dict[str, FlowRecord] = poll(ended, f"flows {orders} ended", deadline=60)
        return found

    def kill(self, proc: Any) -> None:
        """SIGKILL a run mid-flow and wait until its actors are gone too."""
        children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert_gone(children, timeout=5.0)

    def start_old_flow_and_kill_its_run(self, order: str) -> None:
        """Run `order` on version 1 until it waits for its truck, then SIGKILL that run."""
        v1 = self.start("v1", "1", "v1", lease="2s")  # killed: its flow is free again 2 s later
        self.schedule(order)
        poll(lambda: ("wait_truck", "1") in self.steps(order), f"{order} waiting on version 1")
        self.kill(v1)


@pytest.fixture
def deploy(cli: Cli, tmp_path: Path, store_url: str) -> Deploy:
    return Deploy(cli, tmp_path, store_url)


def test_a_flow_started_on_version_1_resumes_on_version_2_after_a_migration(deploy: Deploy) -> None:
    deploy.start_old_flow_and_kill_its_run("old")
    assert deploy.flows()["old"].version == "1"
    moved = deploy.cli("migrate", "--from", "1", "--to", "2", "--store", deploy.store)
    assert moved.returncode == 0 and "moved 1 live flow of version 1 to version 2" in moved.stdout, moved
    deploy.start("v2", "2", "v2")
    deploy.schedule("new")
    deploy.go("old", "new")
    flows = deploy.wait_ended("old", "new")
    # the old flow replays its packing and skips the fraud check it never had; the new one has it
    assert (flows["old"].status, flows["old"].value) == ("COMPLETE", "2:packed,loaded,shipped")
    assert (flows["new"].status, flows["new"].value) == ("COMPLETE", "2:checked,packed,loaded,shipped")
    assert deploy.steps("old") == [("pack", "1"), ("wait_truck", "1"), ("wait_truck", "2"), ("ship", "2")]
    assert [v for _, v in deploy.steps("new")] == ["2"] * 4
    assert (flows["old"].version, flows["new"].version) == ("2", "2")
    shown = deploy.cli("inspect", "old", "--history", "--store", deploy.store)
    first = shown.stdout.splitlines()[0]
    assert "COMPLETE, attempt 1, epoch" in first and first.endswith(", version 2"), shown
    (migrated,) = [line for line in shown.stdout.splitlines() if " migrated " in line]
    assert "from=1" in migrated and "to=2" in migrated  # (Redis keeps an event's details in another order)


def test_migrating_to_code_without_the_patch_fails_the_flow_naming_it(deploy: Deploy) -> None:
    deploy.start_old_flow_and_kill_its_run("old")
    assert deploy.cli("migrate", "old", "--to", "2", "--store", deploy.store).returncode == 0
    deploy.start("v2-unpatched", "2", "v2")
    flows = deploy.wait_ended("old")
    error = flows["old"].error
    assert flows["old"].status == "FAILED" and error is not None
    assert error.type == "ergon_actors.errors:NondeterminismError"
    assert "recorded pack" in error.message and "patched('check_fraud')" in error.message
    assert ("check_fraud", "2") not in deploy.steps("old")  # failed on replay, before running anything


def test_two_versions_on_one_store_never_run_each_others_flows(deploy: Deploy) -> None:
    deploy.start_old_flow_and_kill_its_run("old")
    deploy.start("v2-unpatched", "2", "v2")  # incompatible code: it must never touch "old"
    deploy.schedule("new")
    deploy.go("new")
    flows = deploy.wait_ended("new")
    assert flows["new"].value == "2:checked,packed,loaded,shipped" and flows["new"].version == "2"
    # the v2 run takes over at once the flows the killed tree held: "old" is due again from then on
    released = poll(lambda: (f := deploy.flows()["old"]).status == "PENDING" and f, "old released by the v2 run")
    assert released.ready_at is not None and released.owner is None
    due = released.ready_at + 1.0  # version 2's worker has looked for work many times since
    poll(lambda: time.time() > due, "old due a second ago")
    still = deploy.flows()["old"]
    assert (still.status, still.epoch, still.owner, still.version) == ("PENDING", released.epoch, None, "1")
    assert [v for _, v in deploy.steps("old")] == ["1", "1"]
    deploy.start("v1", "1", "v1-again")  # blue and green at once
    orders = [f"o{i}" for i in range(12)]
    deploy.go("old", *orders)
    deploy.schedule(*orders)
    flows = deploy.wait_ended("old", *orders)
    assert flows["old"].value == "1:packed,loaded,shipped"
    assert deploy.steps("old")[2:] == [("wait_truck", "1"), ("ship", "1")]
    served = {}
    for order in orders:
        versions = {v for _, v in deploy.steps(order)}
        assert len(versions) == 1, (order, deploy.steps(order))  # every step on the code it started on
        (served[order],) = versions
        assert flows[order].status == "COMPLETE" and flows[order].version == served[order]
        assert flows[order].value.startswith(served[order] + ":")


def test_an_idle_run_of_another_version_says_how_to_move_the_flows_it_leaves(cli: Cli, tmp_path: Path) -> None:
    deploy = Deploy(cli, tmp_path, f"sqlite:///{tmp_path}/flows.db")
    deploy.schedule("old")
    pinned = cli("migrate", "old", "--to", "1", "--store", deploy.store)
    assert pinned.returncode == 0 and "moved 1 live flow to version 1" in pinned.stdout, pinned
    out = cli("run", "shipflows", "--store", deploy.store, "--version", "2", "--until-idle", "-q",
              env=deploy.env("v2"))
    assert out.returncode == 4, out.stderr
    assert "flows of version 1 are due but the workers here serve version 2" in out.stderr
    assert "migrate --from 1 --to 2" in out.stderr
    assert deploy.steps("old") == []


@pytest.mark.parametrize("args, message", [
    (["--to", "2"], "name the flows to move: --from A, or their FLOW_IDs"),
    (["--from", "1"], "give --to B, or --unpin"),
    (["--from", "1", "--to", "2", "--unpin"], "give --to B, or --unpin"),
    (["--from", " ", "--to", "2"], "a version is a non-empty string"),
])
def test_migrate_refuses_what_names_no_flows_or_no_target(cli: Cli, tmp_path: Path, args: list[str],
                                                          message: str) -> None:
    store = f"sqlite:///{tmp_path}/flows.db"
    assert cli("schedule", "tests.cli.flows:Story", "--args", '{"key": "k"}', "--store", store).returncode == 0
    out = cli("migrate", *args, "--store", store)
    assert out.returncode == 2 and message in out.stderr, out


def test_a_version_setting_must_not_be_empty(cli: Cli, tmp_path: Path) -> None:
    out = cli("run", "tests.cli.flows", "--version", "", "--store", f"sqlite:///{tmp_path}/unused.db")
    assert out.returncode == 2 and "setting version must be 1 to 128 characters" in out.stderr, out
