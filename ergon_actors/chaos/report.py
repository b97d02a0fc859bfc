"""What a chaos run returns (a frozen report with its violations) and how it is shown."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TextIO

from ..executor.context import position_label

__all__ = ["Violation", "FaultRecord", "RecoveryStats", "ChaosReport", "ChaosProgress",
           "ProgressPrinter", "VERIFIED_ORDER"]


VERIFIED_ORDER = ("flow", "step", "parallel step", "retried step", "step timeout", "timer", "signal",
                  "signal timeout", "deadline", "child", "retried flow", "failed flow", "cancelled flow",
                  "event history")


@dataclass(frozen=True, slots=True)
class Violation:
    """A broken promise: its kind (see ergon_actors.chaos.verify), where, and what was seen."""

    kind: str
    flow_id: str | None
    position: int | None  # the step position, when the violation is about one step
    detail: str

    def __str__(self) -> str:
        where = "" if self.flow_id is None else f" flow {self.flow_id}"
        if self.position is not None:
            where += f" step {position_label(self.position)}"
        return f"{self.kind}:{where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One injected fault."""

    kind: str
    at: float        # seconds since the run started
    target: str      # what was hit, e.g. "worker-1 (pid 4242)"
    affected: int    # flows RUNNING on the target when it was hit
    note: str = ""


@dataclass(frozen=True, slots=True)
class RecoveryStats:
    """Seconds from a fault to the next step start of each flow it affected."""

    samples: int
    p50: float | None
    p99: float | None
    max: float | None

    def __str__(self) -> str:
        if not self.samples:
            return "no samples"
        return f"p50 {self.p50:.3f}s, p99 {self.p99:.3f}s, max {self.max:.3f}s ({self.samples} samples)"

    @classmethod
    def of(cls, samples: list[float]) -> RecoveryStats:
        if not samples:
            return cls(0, None, None, None)
        ordered = sorted(samples)

        def rank(p: int) -> float:  # nearest rank
            return ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * p // 100) - 1))]
        return cls(len(ordered), rank(50), rank(99), ordered[-1])


@dataclass(frozen=True)
class ChaosReport:
    """The outcome of a chaos run. `ok` is True when no violation was found."""

    module: str
    store: str
    seed: int
    workers: int
    duration: float            # the fault phase, seconds
    elapsed: float             # the whole run, seconds
    flows: int
    statuses: Mapping[str, int]
    faults: tuple[FaultRecord, ...]
    step_runs: int
    steps_journaled: int
    re_executed: int
    stale_runs: int
    fenced: int                # writes the journal refused for a stale epoch (from its log)
    recovery: RecoveryStats
    supervisors: int           # supervisor processes started (1 + restarts)
    violations: tuple[Violation, ...]
    recovery_by_kind: Mapping[str, RecoveryStats] = field(default_factory=dict)
    verified: Mapping[str, int] = field(default_factory=dict)  # what was checked: flows, records by kind
    signals: int = 0             # signals the harness sent
    signals_after_fault: int = 0  # ... of them right after a fault, while its victim was down
    cancels: int = 0             # flows the harness cancelled
    hosts: int = 1               # supervisor trees on the one store
    fenced_by_host: tuple[int, ...] = ()  # writes refused by each host's journals (with hosts > 1)
    notes: tuple[str, ...] = ()
    work_dir: str | None = None  # kept when there are violations: store, ledger, logs

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def faults_by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for fault in self.faults:
            counts[fault.kind] = counts.get(fault.kind, 0) + 1
        return counts

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.update(ok=self.ok, faults_by_kind=self.faults_by_kind, statuses=dict(self.statuses),
                    verified=dict(self.verified),
                    recovery_by_kind={k: asdict(v) for k, v in self.recovery_by_kind.items()})
        return data

    def format(self) -> str:
        """The report as text, one fact a line; violations listed last."""
        kinds = ", ".join(f"{k} {n}" for k, n in self.faults_by_kind.items()) or "none"
        complete = self.statuses.get("COMPLETE", 0)
        r = self.recovery
        lines = [
            f"chaos run of {self.module}: {self.flows} flows, "
            + (f"{self.hosts} hosts of {self.workers} workers" if self.hosts > 1 else f"{self.workers} workers")
            + f", store {self.store}, seed {self.seed}",
            f"faults injected: {len(self.faults)} in {self.duration:.1f}s ({kinds})",
            f"flows: {complete}/{self.flows} complete"
            + "".join(f", {n} {s.lower()}" for s, n in sorted(self.statuses.items()) if s != "COMPLETE"),
            f"steps: {self.steps_journaled} journaled, {self.step_runs} runs, {self.re_executed} run again "
            f"after a fault cut them, {self.stale_runs} stale runs by overtaken workers",
            f"writes refused by fencing: {self.fenced}"
            + (" (" + ", ".join(f"host-{i} {n}" for i, n in enumerate(self.fenced_by_host)) + ")"
               if self.fenced_by_host else ""),
            f"recovery (fault -> next step start of an affected flow): {r}",
        ]
        lines += [f"  {kind}: {stats}" for kind, stats in self.recovery_by_kind.items()]
        lines.append(f"supervisors started: {self.supervisors}")
        if self.signals or self.cancels:
            lines.append(f"signals sent: {self.signals} ({self.signals_after_fault} right after a fault); "
                         f"flows cancelled: {self.cancels}")
        if self.verified:
            order = {kind: i for i, kind in enumerate(VERIFIED_ORDER)}
            shown = sorted(self.verified.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
            lines.append("verified: " + ", ".join(f"{kind} {n}" for kind, n in shown))
        lines += [f"note: {n}" for n in self.notes]
        if self.violations:
            lines.append(f"VIOLATIONS: {len(self.violations)}")
            lines += [f"  {v}" for v in self.violations[:200]]
            if len(self.violations) > 200:
                lines.append(f"  ... and {len(self.violations) - 200} more (--json lists all)")
            if self.work_dir:
                lines.append(f"store, ledger and logs kept in {self.work_dir}")
        else:
            lines.append("violations: none")
        lines.append(f"elapsed: {self.elapsed:.1f}s")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ChaosProgress:
    """A snapshot passed to the progress callback about twice a second."""

    elapsed: float
    phase: str          # "faults", "settling", "verifying"
    flows_done: int
    flows: int
    faults: int
    recoveries: int     # faults after which an affected flow has started a step again
    by_kind: Mapping[str, int] = field(default_factory=dict)


class ProgressPrinter:
    """One progress line on a stream: rewritten in place on a terminal, else every few seconds."""

    def __init__(self, stream: TextIO, every: float = 5.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.every = every
        self._last = 0.0
        self._width = 0

    def __call__(self, p: ChaosProgress) -> None:
        now = time.monotonic()
        if not self.tty and now - self._last < self.every and p.phase != "verifying":
            return
        self._last = now
        line = (f"chaos {p.elapsed:5.1f}s [{p.phase}] flows {p.flows_done}/{p.flows} done, "
                f"faults {p.faults}, recoveries {p.recoveries}")
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
