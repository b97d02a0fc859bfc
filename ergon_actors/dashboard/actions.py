"""The dashboard's actions (POST only, token and CSRF checked): send a signal, cancel, retry and
fork a flow, through the same operations as the command line (ergon_actors.ops)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request

from .. import codec, ops
from ..errors import ConfigError
from ..storage.base import LogBase

__all__ = ["read_form", "same_origin", "perform", "MESSAGES", "MAX_BODY"]

MAX_BODY = 64 * 1024  # bytes of a form at most
MESSAGES = {
    "signal-sent": "signal sent: the flow waiting for it resumes",
    "signal-kept": "signal sent; no flow waits for it yet: it is kept until one does",
    "signal-dropped": "this signal was sent before; this one was dropped (a signal is delivered once)",
    "cancelled": "flow cancelled",
    "cancel-requested": "the flow is running: it stops at its next step boundary",
    "ended": "the flow had ended already: nothing to cancel",
    "retried": "the flow is queued again as its next attempt: completed steps replay",
    "forked": "forked: this is the new flow",
}


async def read_form(request: Request) -> dict[str, str] | None:
    """The url-encoded form, its first value per field; None when it is larger than MAX_BODY."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=32)
    except ValueError:  # more fields than that
        return None
    return {k: v[0] for k, v in fields.items()}


def same_origin(request: Request) -> bool:
    """A browser's Origin header, when it sends one, names this dashboard's host."""
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


async def perform(store: LogBase, action: str, flow_id: str, form: dict[str, str]) -> tuple[str, str]:
    """(the message key, the flow to show after) of the action; ErgonError when it is refused."""
    if action == "signal":
        name = form.get("name", "").strip()
        if not name:
            raise ConfigError("name the signal to send")
        try:
            payload = json.loads(form.get("payload") or "null")
        except json.JSONDecodeError as exc:
            raise ConfigError(f"the payload is not valid JSON: {exc}") from None
        sent = await ops.send_signal(store, name, codec.encode(payload))
        return ("signal-sent" if sent.waiting else "signal-kept") if sent.sent else "signal-dropped", flow_id
    if action == "cancel":
        outcome = await ops.cancel_flows(store, [flow_id])
        return ("cancelled" if outcome.cancelled else "cancel-requested" if outcome.requested else "ended"), flow_id
    if action == "retry":
        await ops.retry_flow(store, flow_id)
        return "retried", flow_id
    if action == "fork":
        text = form.get("from_step", "").strip()
        if not text.isdigit():
            raise ConfigError(f"the step to fork from is a position >= 0, got {text!r}")
        new_id = await ops.fork_flow(store, flow_id, int(text), form.get("new_id", "").strip() or None)
        return "forked", new_id
    raise ConfigError(f"no such action: {action!r} (signal, cancel, retry, fork)")
