"""PyErgon's builder methods of Worker: `Worker(store, "w1").with_poll_interval(0.1)...`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

__all__ = ["PyErgonBuilders"]


class PyErgonBuilders:
    """Mixed into Worker: PyErgon's builders, each setting one of the Worker's options."""

    if TYPE_CHECKING:  # the Worker's options
        poll_interval: float
        idle_poll: float
        concurrency: int
        _signal_poll_interval: float

    def with_poll_interval(self, seconds: float) -> Self:
        """How long a busy worker waits before looking for more work (it is also woken); an idle
        one sleeps until its next flow is due, at most max(idle_poll, this)."""
        self.poll_interval = seconds
        self.idle_poll = max(self.idle_poll, seconds)
        return self

    def with_max_concurrent_flows(self, limit: int) -> Self:
        """Run at most `limit` flows at once."""
        if limit < 1:
            raise ValueError(f"max concurrent flows must be >= 1, got {limit}")
        self.concurrency = limit
        return self

    def with_signal_interval(self, seconds: float) -> Self:
        """How often waiting signals are looked up in the signal source."""
        self._signal_poll_interval = seconds
        return self

    def with_timers(self) -> Self:
        """PyErgon's switch for timers. Timers always fire here (a due timer makes its flow
        claimable), so this changes nothing."""
        return self

    def with_timer_interval(self, seconds: float) -> Self:
        """PyErgon's timer poll. A due timer's flow is claimed within the poll interval here,
        so this changes nothing."""
        return self
