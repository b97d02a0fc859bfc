"""The dashboard without a browser: where it may listen, read-only mode, serving beside an
embedded supervisor, and the chaos reports it reads."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from ergon_actors import ops
from ergon_actors.chaos.reports import KEEP, load_reports, save_report
from ergon_actors.chaos.report import ChaosReport, FaultRecord, RecoveryStats
from ergon_actors.dashboard import Dashboard, DashboardServer, check_bind, is_loopback
from ergon_actors.errors import ConfigError
from ergon_actors.storage import open_store
from tests.cli.flows import Waiter
from tests.redis_server import RedisServer

from .conftest import ROOT

pytestmark = pytest.mark.timeout(60)
TOKEN = "serving-test-token-0123456789"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_token(host):
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "dashboard.example"])
def test_beyond_loopback_a_token_is_required(host):
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="beyond this machine: give it a token"):
        check_bind(host, None)
    check_bind(host, TOKEN)
    with pytest.raises(ConfigError, match="at least 16 characters"):
        check_bind(host, "short")


def get(port: int, path: str, body: str | None = None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request("POST" if body is not None else "GET", path, body=body,
                           headers={"Authorization": f"Bearer {TOKEN}",
                                    "Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_read_only_shows_no_action_and_refuses_every_one(tmp_path):
    url = f"sqlite:///{tmp_path}/flows.db"

    async def go() -> tuple[int, str, int, str]:
        store = await open_store(url)
        try:
            await ops.schedule_flow(store, Waiter("go"), "waiter")
        finally:
            await store.close()
        async with DashboardServer(url, port=0, token=TOKEN, read_only=True, chaos_dir=tmp_path) as dash:
            status, html = await asyncio.to_thread(get, dash.port, "/flow?id=waiter")
            refused, why = await asyncio.to_thread(get, dash.port, "/actions/cancel", "flow_id=waiter")
        return status, html, refused, why

    status, html, refused, why = asyncio.run(asyncio.wait_for(go(), 30))
    assert status == 200 and "read-only: actions are off" in html and "<form" not in html
    assert refused == 403 and "read-only" in why


@pytest.mark.redis
def test_the_dashboard_reads_a_redis_store(tmp_path):
    server = RedisServer(tmp_path / "redis").start()

    async def go() -> tuple[int, str]:
        store = await open_store(server.url)
        try:
            await ops.schedule_flow(store, Waiter("go"), "redis-waiter")
            async with DashboardServer(store, port=0, token=TOKEN, snapshots=list) as dash:
                return await asyncio.to_thread(get, dash.port, "/flows?status=pending&type=Waiter")
        finally:
            await store.close()

    try:
        status, html = asyncio.run(asyncio.wait_for(go(), 30))
    finally:
        server.stop()
    assert status == 200 and 'href="/flow?id=redis-waiter"' in html


def test_a_port_in_use_is_a_clear_error(tmp_path):
    async def go() -> None:
        async with DashboardServer(f"sqlite:///{tmp_path}/a.db", port=0, token=TOKEN) as first:
            with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1 port {first.port}"):
                DashboardServer(f"sqlite:///{tmp_path}/a.db", port=first.port, token=TOKEN)

    asyncio.run(asyncio.wait_for(go(), 30))


def test_the_dashboard_serves_beside_an_embedded_supervisor():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "embed_dashboard.py")], cwd=ROOT,
                         capture_output=True, text=True, timeout=50,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["shipped-A1", "the dashboard shows 3 actors: journal, worker-0, worker-1"]


def report(seed: int) -> ChaosReport:
    return ChaosReport("m", "sqlite", seed, 1, 2.0, 3.0, 4, {"COMPLETE": 4}, (FaultRecord("kill-worker", 1.0, "w", 2),),
                       10, 10, 1, 0, 0, RecoveryStats.of([0.5]), 1, ())


def test_chaos_reports_are_kept_newest_first_and_bounded(tmp_path: Path):
    for seed in range(KEEP + 3):
        save_report(report(seed), tmp_path, now=1_000_000 + seed)
    (tmp_path / "chaos-999999999999999-1.json").write_text("not json")  # sorts first: skipped, not fatal
    assert len(list(tmp_path.glob("chaos-*.json"))) == KEEP + 1
    loaded = load_reports(tmp_path, limit=3)
    assert [r["seed"] for r in loaded] == [KEEP + 2, KEEP + 1, KEEP]
    assert loaded[0]["faults"][0]["kind"] == "kill-worker" and loaded[0]["recovery"]["p50"] == 0.5
    assert json.loads((tmp_path / loaded[0]["file"]).read_text())["finished_at"] == 1_000_000 + KEEP + 2
    assert load_reports(tmp_path / "missing") == []


def test_mounted_in_another_asgi_app_its_links_and_cookie_follow_the_mount_path(tmp_path):
    url = f"sqlite:///{tmp_path}/flows.db"

    async def go() -> tuple[tuple[int, dict[str, str]], tuple[int, str]]:
        store = await open_store(url)
        try:
            await ops.schedule_flow(store, Waiter("go"), "waiter")
        finally:
            await store.close()
        dashboard = Dashboard(url, token=TOKEN)
        service = Starlette(routes=[Mount("/ops", app=dashboard.app)])
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(service, log_level="warning", lifespan="off"))
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                await asyncio.sleep(0.01)
            login = await asyncio.to_thread(raw, port, f"/ops/?token={TOKEN}")
            listing = await asyncio.to_thread(get, port, "/ops/flows")
        finally:
            server.should_exit = True
            await task
            sock.close()
            await dashboard.close()
        return login, listing

    (status, headers), (listed, html) = asyncio.run(asyncio.wait_for(go(), 30))
    assert status == 303 and headers["location"].endswith("/ops/") and "Path=/ops/" in headers["set-cookie"]
    assert listed == 200 and 'href="/ops/flow?id=waiter"' in html and 'href="/ops/static/dashboard.css"' in html


def raw(port: int, path: str) -> tuple[int, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status, dict(response.getheaders())
    finally:
        connection.close()
