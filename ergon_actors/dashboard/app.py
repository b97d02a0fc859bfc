"""The dashboard as an ASGI application (Starlette): its pages, its actions, its guards.

`create_app()` builds one to serve alone (see serve()) or to mount inside another ASGI
service; it opens the store at its first request and closes it at shutdown (`Dashboard.close()`
when mounted: a mounted app gets no lifespan events of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import ops
from ..chaos.reports import default_report_dir, load_reports
from ..config import public_store_url
from ..errors import ConfigError, ErgonError, FlowNotFoundError
from ..runtime import rundir
from ..runtime.snapshot import Snapshot
from ..storage import open_store
from ..storage.base import LogBase
from . import actions
from .data import Sampler, overview
from .html import Context, esc, page
from .security import COOKIE, Guard
from .view_chaos import chaos_page
from .view_flows import FILTER_FIELDS, flow_page, flows_page
from .view_overview import overview_page

__all__ = ["Dashboard", "create_app"]

log = logging.getLogger(__name__)
ASSETS = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}


class Dashboard:
    """The dashboard's state: its store, the sampler of flow counts, its guard and options."""

    def __init__(self, store: str | LogBase, *, token: str, read_only: bool = False,
                 snapshots: Callable[[], list[Snapshot]] | None = None, chaos_dir: Path | None = None,
                 refresh: float = 2.0, sample_interval: float = 5.0) -> None:
        if refresh <= 0 or sample_interval <= 0:
            raise ConfigError("the dashboard's refresh and sample intervals must be > 0")
        self._url = store if isinstance(store, str) else None
        self._store = None if isinstance(store, str) else store
        self.store_name = public_store_url(store) if isinstance(store, str) else type(store).__name__
        self.guard = Guard(token)
        self.read_only = read_only
        self.snapshots = snapshots or self._local_snapshots
        self.chaos_dir = chaos_dir or default_report_dir()
        self.refresh = refresh
        self.sample_interval = sample_interval
        self.sampler = Sampler()
        self._lock = asyncio.Lock()
        self._sampling: asyncio.Task[None] | None = None
        self.app = Starlette(routes=self._routes(), lifespan=self._lifespan)
        self.app.state.dashboard = self

    def _local_snapshots(self) -> list[Snapshot]:
        """The supervisors of this store running on this host (their run directories)."""
        return [s for s in rundir.snapshots() if s.store == self.store_name]

    async def store(self) -> LogBase:
        """The store, opened at the first call; the sampling of flow counts starts with it."""
        async with self._lock:
            if self._store is None:
                assert self._url is not None
                self._store = await open_store(self._url)
            if self._sampling is None:
                self._sampling = asyncio.get_running_loop().create_task(self._sample(self._store))
            return self._store

    async def _sample(self, store: LogBase) -> None:
        while True:
            try:
                await overview(store, self.sampler, self.snapshots, shown=1)
            except Exception:  # a broken sample must not end the sampling; the overview shows the store's state
                log.exception("dashboard: sampling the flow counts failed")
            await asyncio.sleep(self.sample_interval)

    async def close(self) -> None:
        """Stop sampling and close the store if the dashboard opened it."""
        if self._sampling is not None:
            self._sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampling
            self._sampling = None
        if self._store is not None and self._url is not None:
            await self._store.close()
            self._store = None

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.close()

    def _routes(self) -> list[Route]:
        return [Route("/", self._guarded(self.overview_page)), Route("/flows", self._guarded(self.flows_page)),
                Route("/flow", self._guarded(self.flow_page)), Route("/chaos", self._guarded(self.chaos_page)),
                Route("/static/{name}", self.asset),
                Route("/actions/{action}", self._guarded(self.action), methods=["POST"])]

    # -- guards ------------------------------------------------------------------------------

    def context(self, request: Request) -> Context:
        return Context(request.scope.get("root_path", ""), self.guard.csrf, self.read_only, self.store_name)

    def _guarded(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def guarded(request: Request) -> Response:
            refused = self._refused(request)
            if refused is not None:
                return refused
            response: Response = await handler(request)
            response.headers.update({"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                     "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
                                     "Content-Security-Policy": "default-src 'self'; style-src 'self'; "
                                                                "script-src 'self'; frame-ancestors 'none'"})
            return response
        return guarded

    def _refused(self, request: Request) -> Response | None:
        given = request.query_params.get("token")
        if given is not None and request.method == "GET":
            if not self.guard.token_ok(given):
                return self._problem(request, 403, "wrong token")
            redirect = RedirectResponse(str(request.url.remove_query_params("token")), status_code=303)
            redirect.set_cookie(COOKIE, self.guard.session, httponly=True, samesite="strict",
                                path=(request.scope.get("root_path") or "") + "/")
            return redirect
        if self.guard.bearer_ok(request.headers.get("authorization")):
            return None
        if not self.guard.session_ok(request.cookies.get(COOKIE)):
            return self._problem(request, 401, "this dashboard needs its token: open the link it printed when it "
                                               "started (…/?token=…), or send Authorization: Bearer TOKEN")
        return None

    def _problem(self, request: Request, status: int, text: str) -> Response:
        ctx = self.context(request)
        return HTMLResponse(page(ctx, "", "Refused", f'<p class="bad">{esc(text)}</p>'), status_code=status)

    # -- pages -------------------------------------------------------------------------------

    def _render(self, request: Request, html: str, status: int = 200) -> HTMLResponse:
        if request.headers.get("x-refresh") == "1":  # dashboard.js wants only the part it refreshes
            start = html.find('<div id="live">')
            end = html.rfind("</main>")
            html = html[start:end] if start >= 0 else html
        return HTMLResponse(html, status_code=status)

    async def overview_page(self, request: Request) -> Response:
        data = await overview(await self.store(), self.sampler, self.snapshots)
        return self._render(request, overview_page(self.context(request), data, self.refresh))

    async def flows_page(self, request: Request) -> Response:
        query: Mapping[str, str] = request.query_params
        statuses = request.query_params.getlist("status")
        found, error = None, None
        limit = query.get("limit") or "50"
        if not limit.isdigit():
            error = f"per page must be a whole number, got {limit!r}"
        else:
            try:
                chosen = ops.parse_filter(statuses, [query.get("type", "")], query.get("since"), query.get("until"),
                                          query.get("id"), query.get("error"))
                found = await ops.list_flows(await self.store(), chosen, newest_first=not query.get("oldest"),
                                             limit=int(limit), cursor=query.get("cursor") or None)
            except ConfigError as exc:
                error = str(exc)
        html = flows_page(self.context(request), {k: query[k] for k in (*FILTER_FIELDS, "oldest", "limit")
                                                  if k in query}, statuses, found, error, self.refresh)
        return self._render(request, html, 200 if error is None else 400)

    async def flow_page(self, request: Request, *, flow_id: str | None = None, problem: str | None = None,
                        status: int = 200) -> Response:
        """The page of the flow `?id=` (or `flow_id`); `problem` says why an action on it was refused."""
        flow_id = request.query_params.get("id") or "" if flow_id is None else flow_id
        try:
            details = await ops.inspect_flow(await self.store(), flow_id)
        except ErgonError as exc:
            return self._problem(request, 404, str(exc))
        message = None if problem else actions.MESSAGES.get(request.query_params.get("done") or "")
        return self._render(request, flow_page(self.context(request), details, self.refresh, message, problem),
                            status)

    async def chaos_page(self, request: Request) -> Response:
        reports = await asyncio.to_thread(load_reports, self.chaos_dir)
        return self._render(request, chaos_page(self.context(request), reports, str(self.chaos_dir)))

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return Response("not found", status_code=404, media_type="text/plain")
        body = resources.files(__package__).joinpath("static", name).read_bytes()
        return Response(body, media_type=ASSETS[name], headers={"Cache-Control": "max-age=300"})

    async def action(self, request: Request) -> Response:
        """Carry out the action named in the path, then show the flow with what happened."""
        if self.read_only:
            return self._problem(request, 403, "this dashboard is read-only: actions are off")
        form = await actions.read_form(request)
        if form is None:
            return self._problem(request, 413, f"the form is larger than {actions.MAX_BODY} bytes or has too "
                                               "many fields")
        if not self.guard.bearer_ok(request.headers.get("authorization")) and not (
                self.guard.csrf_ok(form.get("csrf")) and actions.same_origin(request)):
            return self._problem(request, 403, "refused: the form's CSRF token is missing or wrong, or it came "
                                               "from another site; reload the page and try again")
        flow_id, action = form.get("flow_id", ""), request.path_params["action"]
        try:
            done, shown = await actions.perform(await self.store(), action, flow_id, form)
        except FlowNotFoundError as exc:
            return self._problem(request, 404, str(exc))
        except ErgonError as exc:
            return await self.flow_page(request, flow_id=flow_id, problem=f"{action} refused: {exc}",
                                        status=400 if isinstance(exc, ConfigError) else 409)
        return RedirectResponse(self.context(request).href("/flow", id=shown, done=done), status_code=303)


def create_app(store: str | LogBase, *, token: str, read_only: bool = False,
               snapshots: Callable[[], list[Snapshot]] | None = None, chaos_dir: Path | None = None,
               refresh: float = 2.0, sample_interval: float = 5.0) -> Starlette:
    """The dashboard of `store` (a URL, or an open store that stays the caller's) as an ASGI app.

    Args:
        token: the secret every request must carry (at least 16 characters): once as ?token= in
            a link (it then sets a cookie), or as an Authorization: Bearer header.
        read_only: show no action and refuse every one.
        snapshots: returns the status snapshots to show (an embedding service passes
            `lambda: [supervisor.snapshot()]`); default: the supervisors of this store on this host
            (found by its URL: none for a store given open).
        chaos_dir: where chaos reports are read from (default: where `chaos` saves them).
        refresh: seconds between the live parts' refreshes in the browser.
        sample_interval: seconds between samples of the flow counts for the chart.

    Raises:
        ConfigError: a token that is too short, or an interval <= 0.
    """
    return Dashboard(store, token=token, read_only=read_only, snapshots=snapshots, chaos_dir=chaos_dir,
                     refresh=refresh, sample_interval=sample_interval).app
