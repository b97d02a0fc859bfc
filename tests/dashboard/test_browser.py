"""The dashboard in a real headless Chromium: every page on a store with flows of every status,
the list's filters and paging, a flow's timeline, and signal, cancel, retry and fork from the page."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
from urllib.parse import quote, urlencode

import pytest

from .conftest import ROOT, SCRIPT_ID, TOKEN, shot

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def test_overview_shows_every_status_the_supervisor_its_workers_and_the_chart(world, page):
    assert page.url.rstrip("/") == world.base  # the token left the address: a cookie holds the session
    tiles = {t.get_attribute("class").split()[-1][2:]: int(t.locator("b").inner_text())
             for t in page.locator(".tile").all()}
    assert tiles["complete"] >= 5 and tiles["failed"] == 2 and tiles["cancelled"] == 1
    assert tiles["pending"] == 1 and tiles["suspended"] == 2 and tiles["running"] == 1
    actors = page.locator("table.actors tbody tr")
    assert actors.count() == 3  # the journal and two workers
    restarts = [row.locator("td").nth(3).inner_text() for row in actors.all()]
    # the Crasher's worker exited once per crash until its flow was quarantined (how many times
    # depends on whether its first crash was shared, in a group, before it ran alone)
    assert any(re.fullmatch(r"[1-9]\d* \(exit [1-9]\d*\)", cell) for cell in restarts), restarts
    for row in actors.all():
        cells = row.locator("td").all_inner_texts()
        assert cells[2] == "ready" and cells[5].endswith("MB") and cells[6].endswith("%"), cells
        assert cells[4].endswith("s ago"), cells
    assert "quarantined 1" in page.locator(".facts").first.inner_text()
    poison = page.locator("section", has_text="Quarantined (poison) flows")
    assert "crasher-1" in poison.inner_text() and "PoisonFlowError" in poison.inner_text()
    assert page.locator("svg.chart polyline").count() == 6
    page.wait_for_selector("body[data-refreshed]", timeout=15_000)  # the live part refreshes by itself
    shot(page, "overview")


def test_the_flow_list_filters_and_pages_like_the_command_line(world, page):
    page.goto(f"{world.base}/flows")
    ids = page.locator("table.flows tbody td:first-child").all_inner_texts()
    assert {"ship-0", SCRIPT_ID, "broken-1", "later-1", "holder-1"} <= set(ids)
    page.locator("input[name=status][value=failed]").check()
    page.locator("form.filters button").click()
    page.wait_for_url("**/flows?**")
    assert sorted(page.locator("table.flows tbody td:first-child").all_inner_texts()) == ["broken-1", "crasher-1"]
    shot(page, "flows-failed")
    page.goto(f"{world.base}/flows?type=Waiter&limit=2&oldest=1")
    first = page.locator("table.flows tbody td:first-child").all_inner_texts()
    page.locator("a.next").click()
    rest = page.locator("table.flows tbody td:first-child").all_inner_texts()
    assert first + rest == ["waiter-1", "waiter-2", "waiter-3"]
    assert page.locator("a.next").count() == 0  # the last page
    page.goto(f"{world.base}/flows?since=tomorrow")
    assert "not a time: 'tomorrow'" in page.locator("#live").inner_text()
    shot(page, "flows")


def test_a_flow_page_shows_its_timeline_and_renders_markup_as_text(world, page):
    page.goto(f"{world.base}/flow?id={quote(SCRIPT_ID)}")
    assert page.locator("h1").inner_text() == f"Flow {SCRIPT_ID}"
    assert page.locator("main script").count() == 0 and page.dialogs == []
    result = page.locator("section", has_text="Steps").locator("td pre").first.inner_text()
    assert result == json.dumps("<script>alert('x')</script>")
    lanes = page.locator("svg.timeline text.lane").all_text_contents()
    assert lanes[0] == "waits" and any("worker" in lane for lane in lanes[1:])
    bars = page.locator("svg.timeline rect.bar").evaluate_all("e => e.map(x => x.className.baseVal)")
    kinds = {c.split()[1] for c in bars}
    assert {"b-queued", "b-timer", "b-step-completed", "b-held"} <= kinds
    events = page.locator("table.history tbody td:nth-child(3)").all_inner_texts()
    assert events[0] == "scheduled" and "timer_set" in events and "child_started" in events
    assert events[-1] == "completed"
    shot(page, "flow")
    page.locator("#live .facts a.flow-id").click()  # its child flow
    assert page.locator("h1").inner_text() == f"Flow {SCRIPT_ID}/2"
    assert page.locator("#live .facts a.flow-id").inner_text() == SCRIPT_ID  # and back to its parent
    page.goto(f"{world.base}/flow?id=crasher-1")
    assert page.locator("svg.timeline path.m-crashed").count() >= 1
    assert "PoisonFlowError" in page.locator("#live").inner_text()
    shot(page, "flow-quarantined")


def test_signal_cancel_retry_and_fork_from_the_page_change_the_flows(world, page):
    page.goto(f"{world.base}/flow?id=waiter-1")
    assert page.locator("input[name=name]").input_value() == "go"  # what it waits for
    page.locator("input[name=payload]").fill('"approved"')
    page.locator("button[value=signal]").click()
    assert "signal sent: the flow waiting for it resumes" in page.locator(".flash").inner_text()
    page.wait_for_selector("#live .facts .s-complete", timeout=30_000)  # the live refresh shows it done
    assert '"approved"' in page.locator("section", has_text="Result").inner_text()

    page.goto(f"{world.base}/flow?id=waiter-2")
    page.locator("button[value=cancel]").click()
    assert page.locator(".flash").inner_text() == "flow cancelled"
    assert page.locator("#live .facts .badge").first.inner_text() == "cancelled"

    (world.markers / "fixed-b").touch()
    page.goto(f"{world.base}/flow?id=broken-1")
    page.locator("button[value=retry]").click()
    assert "queued again as its next attempt" in page.locator(".flash").inner_text()
    page.wait_for_selector("#live .facts .s-complete", timeout=30_000)
    assert "attempt 2" in page.locator("#live .facts").inner_text()
    shot(page, "flow-retried")

    page.goto(f"{world.base}/flow?id=ship-0")
    page.locator("input[name=from_step]").fill("3")
    page.locator("input[name=new_id]").fill("ship-0-copy")
    page.locator("button[value=fork]").click()
    assert page.locator("h1").inner_text() == "Flow ship-0-copy"
    page.wait_for_selector("#live .facts .s-complete", timeout=30_000)
    assert world.wait_for({"waiter-1": "COMPLETE", "waiter-2": "CANCELLED", "broken-1": "COMPLETE",
                           "ship-0-copy": "COMPLETE"})

    page.goto(f"{world.base}/flow?id=ship-0")
    page.locator("input[name=from_step]").fill("1")
    page.locator("input[name=new_id]").fill("ship-0-copy")
    page.locator("button[value=fork]").click()  # the id is taken: refused, said on the page
    assert "fork refused" in page.locator(".flash.bad").inner_text()


def test_the_chaos_page_shows_the_last_run_with_its_faults_and_recovery(world, page):
    chaos = world.procs["chaos"]
    assert chaos.wait(timeout=90) == 0, world.output("chaos")
    page.goto(f"{world.base}/chaos")
    report = page.locator("section.report").first
    assert "examples.chaos_orders" in report.locator("h2").inner_text()
    assert "no violation" in report.locator("h2").inner_text()
    assert report.locator("svg.timeline text.lane").all_text_contents() == ["kill-worker"]
    assert report.locator("svg.timeline path.m-fault").count() >= 1
    rows = report.locator("table tbody tr").all()
    assert rows[0].locator("td").first.inner_text() == "all faults"
    assert rows[0].locator("td").nth(1).inner_text().endswith("s")  # a recovery p50 in seconds
    shot(page, "chaos")


# -- the guards, without a browser ------------------------------------------------------------

def fetch(world, path, *, body=None, headers=None):
    """(status, headers, text) of one request to the dashboard; redirects are not followed."""
    host, port = world.base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=20)
    try:
        connection.request("POST" if body is not None else "GET", path,
                           body=None if body is None else urlencode(body),
                           headers={**({"Content-Type": "application/x-www-form-urlencoded"} if body else {}),
                                    **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


def session_cookie(world):
    status, headers, _ = fetch(world, f"/?token={TOKEN}")
    assert status == 303 and headers["location"].endswith("/")
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    return cookie.split(";")[0]


def csrf_of(world, cookie, flow_id):
    _, _, html = fetch(world, f"/flow?id={quote(flow_id)}", headers={"Cookie": cookie})
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def test_every_request_needs_the_token(world):
    assert fetch(world, "/")[0] == 401
    assert fetch(world, "/flows?status=failed")[0] == 401
    assert fetch(world, "/?token=not-the-token-at-all")[0] == 403
    assert fetch(world, "/", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert fetch(world, "/", headers={"Cookie": session_cookie(world)})[0] == 200


def test_an_action_without_the_token_or_its_csrf_token_is_refused(world):
    cookie = session_cookie(world)
    csrf = csrf_of(world, cookie, "later-1")
    form = {"flow_id": "later-1", "csrf": csrf}
    assert fetch(world, "/actions/cancel", body=form)[0] == 401  # no token: no session
    assert fetch(world, "/actions/cancel", body={"flow_id": "later-1"}, headers={"Cookie": cookie})[0] == 403
    assert fetch(world, "/actions/cancel", body={**form, "csrf": "0" * 64}, headers={"Cookie": cookie})[0] == 403
    evil = {"Cookie": cookie, "Origin": "http://evil.example"}
    assert fetch(world, "/actions/cancel", body=form, headers=evil)[0] == 403  # another site's form
    assert fetch(world, "/actions/cancel", headers={"Cookie": cookie})[0] == 405  # a GET does nothing
    assert world.statuses()["later-1"] == "PENDING"
    status, headers, _ = fetch(world, "/actions/cancel", body=form, headers={"Cookie": cookie,
                                                                             "Origin": world.base})
    assert status == 303 and "done=cancelled" in headers["location"]
    assert world.statuses()["later-1"] == "CANCELLED"


def test_a_bind_beyond_loopback_without_a_token_is_refused(world):
    out = subprocess.run([sys.executable, "-m", "ergon_actors", "dashboard", "--host", "0.0.0.0", "--port", "0",
                          "--store", world.store], cwd=ROOT, env=world.env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "beyond this machine: give it a token" in out.stderr and out.stdout == ""
    short = subprocess.run([sys.executable, "-m", "ergon_actors", "dashboard", "--port", "0", "--store", world.store],
                           cwd=ROOT, env={**world.env, "ERGON_DASHBOARD_TOKEN": "short"}, capture_output=True,
                           text=True, timeout=60)
    assert short.returncode == 2 and "at least 16 characters" in short.stderr
