"""The rules of named queues every store applies the same way: which due flows a claim may take.

A claim takes flows of named queues first, round robin across the queues, then fills up from the
default queue. Within a queue it takes flows whose lease lapsed (they already count as running),
then due flows by priority (higher first) and due time. Concurrency counts RUNNING flows: a flow
stops counting when it ends, suspends, is released or its worker's crash is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, zip_longest

from ..core.queues import QueueLimits

__all__ = ["Load", "Candidate", "admit", "interleave", "candidates_wanted"]


@dataclass(slots=True)
class Load:
    """A queue's figures when a claim starts: RUNNING flows, those of the claiming worker, by
    key, and starts in the last rate period."""

    running: int = 0
    mine: int = 0
    keys: dict[str, int] = field(default_factory=dict)
    starts: int = 0


Candidate = tuple[str, str | None, bool]  # flow_id, its key, whether it is RUNNING already (lease lapsed)


def room(limits: QueueLimits | None, load: Load, want: int) -> int:
    """How many flows the queue lets this claim take at most, before keys are looked at."""
    if limits is None:
        return want
    caps = [want]
    if limits.rate_limit is not None:
        caps.append(limits.rate_limit - load.starts)
    if limits.worker_concurrency is not None:
        caps.append(limits.worker_concurrency - load.mine)
    return max(0, min(caps))


def candidates_wanted(limits: QueueLimits | None, load: Load, want: int) -> int:
    """How many candidates to read for a claim of `want`: some more when keys may turn some away."""
    n = room(limits, load, want)
    return n * 2 + 8 if n and limits is not None and limits.key_concurrency is not None else n


def admit(limits: QueueLimits | None, load: Load, want: int, candidates: Iterable[Candidate]) -> list[str]:
    """The candidates (in claim order) a claim of at most `want` flows takes from one queue."""
    n = room(limits, load, want)
    picked: list[str] = []
    if n <= 0:
        return picked
    running, keys = load.running, dict(load.keys)
    concurrency = None if limits is None else limits.concurrency
    per_key = None if limits is None else limits.key_concurrency
    for flow_id, key, already in candidates:
        if not already:  # a lapsed lease is running already: taking it over adds nothing
            if concurrency is not None and running >= concurrency:
                continue
            if per_key is not None and key is not None and keys.get(key, 0) >= per_key:
                continue
            running += 1
            if key is not None:
                keys[key] = keys.get(key, 0) + 1
        picked.append(flow_id)
        if len(picked) >= n:
            break
    return picked


def interleave(picks: Sequence[list[str]], limit: int) -> list[str]:
    """Round robin across the queues' picks, at most `limit` in all."""
    merged = [i for i in chain.from_iterable(zip_longest(*picks)) if i is not None]
    return merged[:max(limit, 0)]
