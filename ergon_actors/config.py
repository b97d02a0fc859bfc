"""Settings: one frozen dataclass with the defaults, read from ERGON_* variables by from_env()."""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import ConfigError

__all__ = ["Settings", "DEFAULT_STORE", "DEFAULT_MAX_MESSAGE_SIZE", "DEFAULT_STEP_TIMEOUT", "check_store_url",
           "public_store_url", "parse_duration", "parse_seconds", "unknown_variables", "OTHER_VARIABLES",
           "parse_queue_overrides", "QUEUE_NAME"]

DEFAULT_STORE = "sqlite:///ergon.db"
DEFAULT_MAX_MESSAGE_SIZE = 4 * 2**20
DEFAULT_STEP_TIMEOUT = 3600.0  # why an hour: docs/timeouts-and-cancellation.md


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the runtime can be tuned by. Pass it explicitly; nothing reads globals.

    Attributes:
        store: store URL (sqlite:///ergon.db, memory://, redis://host:port/db).
        synchronous: SQLite durability: FULL survives power loss, NORMAL survives process crashes.
        workers: worker actor processes.
        concurrency: flows each worker runs at once.
        lease_seconds: a claim's lease; another host takes a flow over after it lapses.
        heartbeat_interval: how often busy actors report to the supervisor (idle ones: `idle_beat`).
        hang_timeout: an actor that sends no heartbeat this long while its process is stopped
            or uses no CPU (frozen) is killed and restarted. Heartbeats come from a thread of
            their own, so a busy event loop does not delay them.
        loop_timeout: an actor whose event loop made no progress this long (a step blocks it)
            is killed and restarted, and the death is recorded as a hang against its flows.
        ready_timeout: how long a starting actor may take to report READY.
        max_restarts, restart_period: restart intensity: more than max_restarts restarts within
            restart_period seconds stops the supervisor (exit non-zero).
        grace: seconds in-flight steps get to finish on shutdown before actors are killed.
        resend_after: seconds a journal request waits for its answer before it is sent again.
        high_water_mark: ZeroMQ queue bound per socket (messages): backpressure beyond it.
        max_message_size: bytes one message to the journal or the supervisor may have; a peer
            sending more is disconnected. A request that cannot fit (a step result, a flow's
            arguments) fails with MessageTooLargeError; bigger batches travel in several messages.
        step_timeout: seconds one try of a step may run before it fails with StepTimeoutError
            (its retry policy applies), unless the step sets its own `@step(timeout=...)`;
            `inf` for no bound.
        max_crashes: a flow whose worker died this many times while running it alone is
            quarantined: FAILED with a PoisonFlowError, never retried.
        max_rss: bytes of resident memory a worker process may use (0: no limit). Over it, the
            worker is drained and replaced; past 1.5 times it, or not gone within grace, it is
            killed and its death recorded with cause "memory".
        max_flows: flows a worker process finishes before it is drained and replaced (0: no limit).
        transport: "ipc" (one host) or "tcp" (loopback or configured interface).
        metrics_port: serve Prometheus metrics at http://metrics_host:metrics_port/metrics from
            the supervisor (0: off). docs/metrics.md lists them.
        metrics_host: the address the metrics are served on (127.0.0.1: this host only).
        traces: the OpenTelemetry span exporter the workers send a span per flow run and per step
            to ("otlp", "console", or any other name installed for OTEL_TRACES_EXPORTER); "" for
            none, and then nothing of OpenTelemetry is imported. docs/metrics.md says how.
        queues: overrides of named queues' limits, e.g. "emails:concurrency=3,rate=10/1s;bulk:
            worker_concurrency=2" (limits: concurrency, worker_concurrency, key_concurrency, rate;
            "none" lifts one). Workers declare them for the queues of the classes they serve.
        retention: seconds an ended flow (COMPLETE, FAILED, CANCELLED) is kept; the journal
            deletes older ones with their steps and history (0: keep every flow).
        version: the code version the workers serve (docs/versioning.md): they claim only flows
            of it or of none, and a flow of none they claim is pinned to it. "auto": derived
            from the source of the modules served. None: every flow, none pinned (as before).
    """

    store: str = DEFAULT_STORE
    synchronous: str = "FULL"
    workers: int = 2
    concurrency: int = 256
    lease_seconds: float = 15.0
    heartbeat_interval: float = 0.5
    hang_timeout: float = 2.0
    loop_timeout: float = 10.0
    ready_timeout: float = 20.0
    max_restarts: int = 10
    restart_period: float = 30.0
    grace: float = 10.0
    resend_after: float = 2.0
    high_water_mark: int = 10_000
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    step_timeout: float = DEFAULT_STEP_TIMEOUT
    max_crashes: int = 3
    max_rss: int = 0
    max_flows: int = 0
    transport: str = "ipc"
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    traces: str = ""
    queues: str = ""
    retention: float = 0.0
    version: str | None = None

    def __post_init__(self) -> None:
        positive = ("workers", "concurrency", "lease_seconds", "heartbeat_interval", "hang_timeout",
                    "loop_timeout", "ready_timeout", "max_restarts", "restart_period", "resend_after",
                    "high_water_mark", "max_message_size", "step_timeout", "max_crashes")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"setting {name} must be > 0, got {getattr(self, name)!r}")
        for name in ("grace", "max_rss", "max_flows", "retention"):
            if getattr(self, name) < 0:
                raise ConfigError(f"setting {name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"setting metrics_port must be a port (1-65535, 0: off), got {self.metrics_port!r}")
        if self.transport not in ("ipc", "tcp"):
            raise ConfigError(f"setting transport must be 'ipc' or 'tcp', got {self.transport!r}")
        if self.synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigError(f"setting synchronous must be OFF, NORMAL, FULL or EXTRA, got {self.synchronous!r}")
        check_store_url(self.store)
        parse_queue_overrides(self.queues)
        if self.version is not None and (not self.version.strip() or len(self.version) > 128):
            raise ConfigError(f"setting version must be 1 to 128 characters (or 'auto'), got {self.version!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ERGON_<NAME> variables (e.g. ERGON_STORE, ERGON_WORKERS), then overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}  # checked by __post_init__
        for f in fields(cls):
            raw = environ.get(f"ERGON_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(f.name, str(f.type), raw)  # annotations are strings here
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def idle_beat(self) -> float:
        """Seconds between an idle actor's heartbeats: 1 s, or half of hang_timeout if that is
        shorter, and never less than heartbeat_interval."""
        return max(self.heartbeat_interval, min(1.0, self.hang_timeout / 2))

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls(**json.loads(text))


_SCHEMES = ("sqlite", "memory", "redis", "rediss")


def check_store_url(url: str) -> str:
    """Return the scheme of a store URL, or raise ConfigError saying what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ConfigError(f"store URL {url!r}: scheme must be one of "
                          f"sqlite:///PATH, memory://, redis://HOST:PORT/DB")
    if parts.scheme == "sqlite" and (parts.netloc or not parts.path.lstrip("/")):
        raise ConfigError(f"store URL {url!r}: write sqlite:///relative.db or sqlite:////absolute/path.db")
    if parts.scheme.startswith("redis") and not parts.hostname:
        raise ConfigError(f"store URL {url!r}: a Redis URL needs a host, e.g. redis://127.0.0.1:6379/0")
    return parts.scheme


def public_store_url(url: str) -> str:
    """The store URL as it may be shown: any password masked, a SQLite path made absolute.

    Every process naming the same store gets the same text, so it also identifies the store.
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return "sqlite:///" + os.path.abspath(parts.path[1:])
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.password is None and not any(k.lower() == "password" for k, _ in query):
        return url
    netloc = parts.netloc
    if parts.password is not None:
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    masked = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in query], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, masked, parts.fragment))


def _parse(name: str, kind: str, raw: str) -> object:
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return parse_seconds(raw)  # 2.5, or a duration such as 10m
    except ValueError:
        what = "duration (seconds, or e.g. 30s, 10m)" if kind == "float" else kind
        raise ConfigError(f"ERGON_{name.upper()}={raw!r} is not a valid {what}") from None
    return raw


# ERGON_* variables read outside Settings: the chaos ledger file, the benchmark's other Python,
# and the command line's own (log level and format).
OTHER_VARIABLES = ("ERGON_CHAOS_LEDGER", "ERGON_BENCH_ALT_PYTHON", "ERGON_LOG_LEVEL", "ERGON_LOG_FORMAT",
                   "ERGON_DASHBOARD_TOKEN")


def unknown_variables(environ: dict[str, str] | None = None) -> list[tuple[str, str | None]]:
    """The ERGON_* variables set that nothing reads (a typo?), each with the closest known name."""
    names = sorted(os.environ if environ is None else environ)
    known = [f"ERGON_{f.name.upper()}" for f in fields(Settings)] + list(OTHER_VARIABLES)
    return [(name, next(iter(difflib.get_close_matches(name, known, n=1)), None))
            for name in names if name.startswith("ERGON_") and name not in known]


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(duration: float | int | str | timedelta) -> float:
    """Seconds from 30, 1.5, "30s", "10m", "2h", "3d", "1h30m", "250ms" or a timedelta.

    Raises:
        ValueError: a string that is not a duration, or a negative duration.
    """
    if isinstance(duration, timedelta):
        seconds = duration.total_seconds()
    elif isinstance(duration, (int, float)) and not isinstance(duration, bool):
        seconds = float(duration)
    elif isinstance(duration, str) and duration.strip():
        text = duration.strip().replace(" ", "")
        parts = _PART.findall(text)
        if "".join(n + u for n, u in parts) != text:
            raise ValueError(f"not a duration: {duration!r} (write e.g. 30s, 10m, 2h, 3d, 1h30m)")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ValueError(f"not a duration: {duration!r}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {duration!r}")
    return seconds


def parse_seconds(text: str) -> float:
    """Seconds from a number ("2.5") or a duration ("10m", "1h30m"); ValueError otherwise."""
    try:
        seconds = float(text)
    except ValueError:
        return parse_duration(text)
    if not seconds >= 0:  # inf is allowed: no bound
        raise ValueError(f"not a number of seconds >= 0: {text!r}")
    return seconds


QUEUE_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_LIMIT_NAMES = ("concurrency", "worker_concurrency", "key_concurrency", "rate")


def parse_queue_overrides(text: str) -> dict[str, dict[str, Any]]:
    """The `queues` setting: "NAME:concurrency=3,rate=10/1s;OTHER:worker_concurrency=2".

    Each value is a number, "none" (no limit) or, for rate, N/PERIOD. Returns {name: {field: value}}.

    Raises:
        ConfigError: a part that does not parse, naming it.
    """
    out: dict[str, dict[str, Any]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, body = part.partition(":")
        if not sep or not QUEUE_NAME.fullmatch(name.strip()):
            raise ConfigError(f"queues setting: {part!r}: write NAME:limit=value,... (e.g. emails:concurrency=3)")
        fields: dict[str, Any] = {}
        for item in filter(None, (i.strip() for i in body.split(","))):
            key, eq, value = (s.strip() for s in item.partition("="))
            if not eq or key not in _LIMIT_NAMES:
                raise ConfigError(f"queues setting: {item!r} in {name}: limits are {', '.join(_LIMIT_NAMES)}")
            try:
                if value.lower() == "none":
                    fields.update({"rate_limit": None} if key == "rate" else {key: None})
                elif key == "rate":
                    count, _, period = value.partition("/")
                    fields["rate_limit"] = int(count)
                    fields["rate_period"] = parse_duration(period or "1s")
                else:
                    fields[key] = int(value)
            except ValueError:
                raise ConfigError(f"queues setting: {item!r} in {name}: not a number"
                                  + (" (write N/PERIOD, e.g. 10/1s)" if key == "rate" else "")) from None
        out[name.strip()] = fields
    return out


