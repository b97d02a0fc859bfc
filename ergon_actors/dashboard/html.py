"""The dashboard's page frame and the small pieces every page uses; every value goes through esc()."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import urlencode

from ..ops import iso, to_json

__all__ = ["Context", "esc", "page", "status_badge", "when", "flow_link", "table", "pre_json", "hidden_csrf",
           "seconds"]

NAV = (("overview", "/", "Overview"), ("flows", "/flows", "Flows"), ("chaos", "/chaos", "Chaos"))


@dataclass(frozen=True, slots=True)
class Context:
    """What a page needs to know about the request: where the dashboard is mounted, the CSRF token
    for its forms, and whether actions are allowed."""

    root: str
    csrf: str
    read_only: bool
    store: str

    def href(self, path: str, **query: Any) -> str:
        """A link inside the dashboard (query values of None are left out)."""
        pairs = [(k, v) for k, v in query.items() if v is not None]
        return self.root + path + (f"?{urlencode(pairs, doseq=True)}" if pairs else "")

    def url(self, path: str, **query: Any) -> str:
        """A link inside the dashboard, escaped for an attribute."""
        return esc(self.href(path, **query))


def esc(value: object) -> str:
    """Text for HTML: <, >, &, and both quotes escaped."""
    return escape(str(value), quote=True)


def when(seconds: float | None) -> str:
    text = iso(seconds)
    return "-" if text is None else esc(text[:23].replace("T", " "))


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def status_badge(status: str) -> str:
    return f'<span class="badge s-{esc(status.lower())}">{esc(status.lower())}</span>'


def flow_link(ctx: Context, flow_id: str) -> str:
    return f'<a class="flow-id" href="{ctx.url("/flow", id=flow_id)}">{esc(flow_id)}</a>'


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    """A table of cells that are HTML already (escape values before)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def pre_json(value: Any) -> str:
    return f"<pre>{esc(json.dumps(to_json(value), indent=2, ensure_ascii=False))}</pre>"


def hidden_csrf(ctx: Context) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(ctx.csrf)}">'


def page(ctx: Context, active: str, title: str, body: str, *, refresh: float | None = None) -> str:
    """A whole page. `body` goes in <main>; a part inside <div id="live"> is refreshed every
    `refresh` seconds by dashboard.js."""
    here = ' class="here"'
    nav = "".join(f'<a href="{ctx.url(path)}"{here if key == active else ""}>{label}</a>' for key, path, label in NAV)
    mode = '<span class="badge ro">read-only</span>' if ctx.read_only else ""
    live = f' data-refresh="{refresh}"' if refresh else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)} · ergon_actors</title>"
            f'<link rel="stylesheet" href="{ctx.url("/static/dashboard.css")}">'
            f'<script defer src="{ctx.url("/static/dashboard.js")}"></script></head>'
            f'<body{live}><header><strong>ergon_actors</strong><nav>{nav}</nav>'
            f'<span class="store">{esc(ctx.store)}</span>{mode}</header>'
            f"<main><h1>{esc(title)}</h1>{body}</main></body></html>")
