"""Named queues: the limits a queue puts on its flows, and how a flow's key and priority are found."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from ..config import QUEUE_NAME, parse_duration, parse_queue_overrides
from ..errors import ConfigError

__all__ = ["Queue", "QueueLimits", "QueueState", "parse_queue_overrides", "overridden", "NAME_MAX"]

NAME_MAX = 200  # characters in a queue name, a key or a dedup id


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """What the journal enforces on a queue's flows when it claims them (None: no limit).

    concurrency: flows RUNNING at once across every worker on the store. worker_concurrency: at
    once on one worker. key_concurrency: at once with the same key. rate_limit: claims in any
    rate_period seconds.
    """

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    key_concurrency: int | None = None
    rate_limit: int | None = None
    rate_period: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not QUEUE_NAME.fullmatch(self.name) or len(self.name) > NAME_MAX:
            raise ConfigError(f"queue name {self.name!r}: use 1 to {NAME_MAX} letters, digits, '_', '.' or '-'")
        for name in ("concurrency", "worker_concurrency", "key_concurrency", "rate_limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"queue {self.name}: {name} must be an integer >= 1 or None, got {value!r}")
        if not isinstance(self.rate_period, (int, float)) or not 0 < self.rate_period < float("inf"):
            raise ConfigError(f"queue {self.name}: rate_period must be > 0 seconds, got {self.rate_period!r}")

    @property
    def limited(self) -> bool:
        """True when any limit is set."""
        return any(v is not None for v in (self.concurrency, self.worker_concurrency, self.key_concurrency,
                                           self.rate_limit))

    def describe(self) -> str:
        """The limits in one line, as `status` shows them."""
        parts = [f"{n}={v}" for n, v in (("concurrency", self.concurrency),
                                          ("worker_concurrency", self.worker_concurrency),
                                          ("key_concurrency", self.key_concurrency)) if v is not None]
        if self.rate_limit is not None:
            parts.append(f"rate={self.rate_limit}/{self.rate_period:g}s")
        return ", ".join(parts) or "no limits"


@dataclass(frozen=True, slots=True)
class QueueState:
    """A queue as `status` shows it: its limits (None: never declared) and its flows now."""

    name: str
    limits: QueueLimits | None
    due: int
    running: int
    waiting: int
    recent_starts: int


@dataclass(frozen=True)
class Queue:
    """A named queue of flows, and the limits the journal enforces when it claims them.

    Attach it to a flow class (`@flow_type(queue=emails)`) or name it when scheduling
    (`scheduler.schedule(flow, queue=emails)`). A worker that serves the class declares the
    queue's limits in the store (the `queues` setting overrides them); the last declaration wins.

    Args:
        name: the queue's name.
        concurrency: flows RUNNING at once across every supervisor on the store.
        worker_concurrency: flows RUNNING at once on one worker process.
        key: the concurrency key of a flow: the name of one of its fields (e.g. "customer_id"),
            or a function of the flow instance returning a string.
        key_concurrency: flows with the same key RUNNING at once.
        rate_limit: flows started (claimed) in any `rate_period`.
        rate_period: seconds, or a duration such as "1m".
        priority: the priority of a flow scheduled without one; higher runs first, FIFO within.
    """

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    key: str | Callable[[Any], object] | None = None
    key_concurrency: int | None = None
    rate_limit: int | None = None
    rate_period: float | str | timedelta = 1.0
    priority: int = 0
    limits: QueueLimits = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            period = parse_duration(self.rate_period)
        except ValueError as exc:
            raise ConfigError(f"queue {self.name}: rate_period: {exc}") from None
        limits = QueueLimits(self.name, self.concurrency, self.worker_concurrency, self.key_concurrency,
                             self.rate_limit, period)
        object.__setattr__(self, "limits", limits)
        if self.key_concurrency is not None and self.key is None:
            raise ConfigError(f"queue {self.name}: key_concurrency needs a key (a field name or a function)")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise ConfigError(f"queue {self.name}: priority must be an integer, got {self.priority!r}")

    def key_of(self, flow: object) -> str | None:
        """The concurrency key of a flow instance (None without a key expression).

        Raises:
            ConfigError: the field is missing, or the key is longer than NAME_MAX characters.
        """
        if self.key is None:
            return None
        if callable(self.key):
            value = self.key(flow)
        elif hasattr(flow, self.key):
            value = getattr(flow, self.key)
        else:
            raise ConfigError(f"queue {self.name}: key field {self.key!r} is not a field of "
                              f"{type(flow).__qualname__}")
        text = str(value)
        if len(text) > NAME_MAX:
            raise ConfigError(f"queue {self.name}: a key is at most {NAME_MAX} characters, got {len(text)}")
        return text


def overridden(limits: QueueLimits, overrides: dict[str, dict[str, Any]]) -> QueueLimits:
    """The limits with the settings' overrides for this queue applied (checked again)."""
    changes = overrides.get(limits.name)
    return limits if not changes else replace(limits, **changes)
