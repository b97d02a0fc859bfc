"""A store with flows of every status, a supervisor running on it, a chaos run's report, the
dashboard serving them (`python -m ergon_actors dashboard`), and headless Chromium (Debian's
`chromium`, driven by Playwright) to look at it. Every process is ended by its pid."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ergon_actors import ops
from ergon_actors.storage import open_store
from tests.cli.flows import Waiter
from tests.dashboard import flows as F

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "test-output" / "dashboard"
TOKEN = "dashboard-test-token-0123456789"
SCRIPT_ID = "<script>alert(1)</script>"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@dataclass
class World:
    folder: Path
    store: str
    markers: Path
    chaos_dir: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    url: str = ""  # the dashboard's link, with its token

    @property
    def base(self) -> str:
        return self.url.split("/?")[0]

    def start(self, name: str, *args: str, **extra: str) -> subprocess.Popen[bytes]:
        with open(self.folder / f"{name}.out", "wb") as out, open(self.folder / f"{name}.err", "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "ergon_actors", *args], cwd=ROOT, stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, env={**self.env, **extra})
        self.procs[name] = proc
        return proc

    def output(self, name: str) -> str:
        return (self.folder / f"{name}.out").read_text() + (self.folder / f"{name}.err").read_text()

    def statuses(self) -> dict[str, str]:
        async def read() -> dict[str, str]:
            store = await open_store(self.store)
            try:
                return {f.flow_id: f.status async for f in ops.iter_flows(store)}
            finally:
                await store.close()
        with ThreadPoolExecutor(1) as thread:  # Playwright's loop runs in this thread
            return thread.submit(asyncio.run, read()).result(timeout=30)

    def wait_for(self, wanted: dict[str, str], deadline: float = 45.0) -> dict[str, str]:
        until = time.monotonic() + deadline
        while True:
            seen = self.statuses()
            if all(seen.get(k) == v for k, v in wanted.items()):
                return seen
            if time.monotonic() > until:
                raise AssertionError(f"flows not in {wanted} within {deadline}s: {seen}\n{self.output('run')}")
            time.sleep(0.1)

    def end(self) -> None:
        (self.markers / "release-h").touch()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)


async def _schedule(url: str) -> None:
    store = await open_store(url)
    try:
        for flow, flow_id in [(F.Shipment("s0"), "ship-0"), (F.Shipment("s1"), "ship-1"),
                              (F.Shipment("x"), SCRIPT_ID), (F.Broken("b"), "broken-1"),
                              (F.Crasher("c"), "crasher-1"), (Waiter("go"), "waiter-1"),
                              (Waiter("stop"), "waiter-2"), (Waiter("never"), "waiter-3"),
                              (F.Holder("h"), "holder-1")]:
            await ops.schedule_flow(store, flow, flow_id)
        await ops.schedule_flow(store, F.Shipment("later"), "later-1", delay=3600)
        await ops.cancel_flows(store, ["waiter-3"])
    finally:
        await store.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("dashboard")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERGON_")}
    env.update(PYTHONPATH=str(ROOT), DASH_TEST_DIR=str(folder / "markers"))
    w = World(folder, f"sqlite:///{folder}/flows.db", folder / "markers", folder / "chaos", env)
    w.markers.mkdir()
    try:
        w.start("chaos", "chaos", "examples.chaos_orders", "--flows", "4", "--duration", "2", "--workers", "1",
                "--faults", "kill-worker", "--report-dir", str(w.chaos_dir))
        asyncio.run(_schedule(w.store))
        w.start("run", "run", "tests.dashboard.flows", "tests.cli.flows", "--store", w.store, "--workers", "2",
                ERGON_MAX_CRASHES="1")
        w.wait_for({"ship-0": "COMPLETE", "ship-1": "COMPLETE", SCRIPT_ID: "COMPLETE", "broken-1": "FAILED",
                    "crasher-1": "FAILED", "waiter-1": "SUSPENDED", "waiter-2": "SUSPENDED",
                    "waiter-3": "CANCELLED", "holder-1": "RUNNING", "later-1": "PENDING"})
        dashboard = w.start("dashboard", "dashboard", "--store", w.store, "--port", "0", "--refresh", "0.5",
                            "--chaos-dir", str(w.chaos_dir), ERGON_DASHBOARD_TOKEN=TOKEN)
        until = time.monotonic() + 30
        while not (w.folder / "dashboard.out").read_text().strip():
            assert dashboard.poll() is None, w.output("dashboard")
            assert time.monotonic() < until, "the dashboard printed no link within 30s"
            time.sleep(0.05)
        w.url = (w.folder / "dashboard.out").read_text().split()[0]
        yield w
    finally:
        w.end()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    assert Path(CHROMIUM).exists(), (f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y "
                                     "chromium); scripts/test.sh does it when run as root")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: object, world: World) -> Iterator[object]:
    """A page of a new browser context, logged in with the dashboard's link; script dialogs are
    counted in `page.dialogs` (markup in a value must never run)."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})  # type: ignore[attr-defined]
    tab = context.new_page()
    tab.dialogs = []
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    tab.goto(world.url)
    try:
        yield tab
    finally:
        context.close()


def shot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]
