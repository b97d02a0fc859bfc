"""The hosts of a chaos run: one supervisor tree each (`python -m ergon_actors run` as its own
process group), all on one store. A host can be killed whole (every process of its tree at
once, as when a machine is lost) or frozen whole (SIGSTOP to every process, as when a machine
stalls), then thawed: its late writes must be refused.
"""

from __future__ import annotations

import contextlib
import signal

import psutil

from .procs import Actor, SupervisorProcess

__all__ = ["Hosts"]


class Hosts:
    """The supervisors under test, by host index; which are frozen and which are down."""

    def __init__(self, sups: list[SupervisorProcess]) -> None:
        self.sups = sups
        self.frozen: dict[int, list[psutil.Process]] = {}  # host -> its processes, as stopped
        self.down: set[int] = set()  # killed whole, its restart pending

    def __len__(self) -> int:
        return len(self.sups)

    def name(self, host: int) -> str:
        return "supervisor" if len(self.sups) == 1 else f"host-{host}"

    def live(self) -> list[int]:
        """Hosts whose supervisor runs and is not frozen."""
        return [i for i, sup in enumerate(self.sups) if sup.running and i not in self.frozen]

    def actors(self) -> list[Actor]:
        """The live, READY actors of every live host."""
        return [a for i in self.live() for a in self.sups[i].actors()]

    def refused(self) -> list[int]:
        """Writes each host's journals refused for a stale epoch so far."""
        return [sup.refused for sup in self.sups]

    def freeze(self, host: int) -> int:
        """SIGSTOP the host's supervisor, then every process under it; returns how many."""
        sup = self.sups[host]
        procs = [p for p in [sup.handle, *sup.descendants()] if p is not None]
        stopped = [p for p in procs if _signal(p, signal.SIGSTOP)]
        self.frozen[host] = stopped
        return len(stopped)

    def thaw(self, host: int) -> None:
        """SIGCONT a frozen host: its actors first, its supervisor last, so that the supervisor
        reads their heartbeats before it judges them."""
        for p in reversed(self.frozen.pop(host, [])):
            _signal(p, signal.SIGCONT)

    def thaw_all(self) -> None:
        for host in list(self.frozen):
            self.thaw(host)


def _signal(proc: psutil.Process, signum: int) -> bool:
    with contextlib.suppress(psutil.Error):
        proc.send_signal(signum)
        return True
    return False
