"""The supervisor's status snapshot: typed, frozen, and the same in-process and on disk.

`Supervisor.snapshot()` returns one; the supervisor also writes it as JSON to its run
directory about once per heartbeat interval, which is how `python -m ergon_actors status` and
the chaos harness see a supervisor running in another process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .messages import JournalStats, WorkerStats, from_dict

__all__ = ["ActorInfo", "Snapshot"]


@dataclass(frozen=True, slots=True)
class ActorInfo:
    """One actor as its supervisor sees it."""

    name: str
    role: str                      # "journal" or "worker"
    pid: int | None
    incarnation: int               # 1 for the first process, +1 per restart
    worker_id: str | None          # the lease owner a worker writes (None for the journal)
    alive: bool
    ready: bool                    # alive and its READY received
    restarts: int
    exit_codes: tuple[int, ...]    # of its earlier processes, newest last (at most 10)
    heartbeat_age: float | None    # seconds since it was last heard from
    stats: WorkerStats | JournalStats | None  # from its last heartbeat
    rss_bytes: int | None
    cpu_percent: float | None      # over the last snapshot interval
    # its counts since the supervisor started: every incarnation's, each up to its last heartbeat
    totals: WorkerStats | JournalStats | None = None
    causes: dict[str, int] = field(default_factory=dict)  # its restarts by cause (see docs/metrics.md)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActorInfo:
        kind = JournalStats if data["role"] == "journal" else WorkerStats
        stats, totals = data["stats"], data.get("totals")
        return cls(**{**data, "exit_codes": tuple(data["exit_codes"]),
                      "stats": None if stats is None else from_dict(kind, stats),
                      "totals": None if totals is None else from_dict(kind, totals)})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A supervisor and its actors at one moment."""

    pid: int
    host: str
    store: str          # public_store_url(): any password masked
    started: float      # wall time the supervisor started
    state: str          # "starting", "running" or "stopping"
    run_dir: str
    dropped: int        # malformed messages the supervisor dropped from its actors
    actors: tuple[ActorInfo, ...]
    crashes: int = 0      # worker deaths recorded on the flows they held (RecordCrash)
    quarantined: int = 0  # flows those crashes quarantined as poison
    recycles: int = 0     # workers drained and replaced for max_rss or max_flows

    @property
    def restarts(self) -> int:
        return sum(a.restarts for a in self.actors)

    @property
    def journal(self) -> JournalStats:
        """The journal's figures from its last heartbeat (zeros before the first)."""
        stats = next((a.stats for a in self.actors if a.role == "journal"), None)
        return stats if isinstance(stats, JournalStats) else JournalStats()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        return cls(**{**data, "actors": tuple(ActorInfo.from_dict(a) for a in data["actors"])})
