"""For retry loops: jittered exponential backoff, and a log of failures that writes one line per
interval however fast the loop fails."""

from __future__ import annotations

import logging
import random
import time

__all__ = ["Backoff", "FailureLog"]


class Backoff:
    """Delays for a loop retrying a failed call: `initial` seconds, doubling up to `maximum`.

    Each delay is drawn at random from the upper half of its step, so that many loops failing
    together (workers of one store, flows released together) do not retry together.
    """

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = max(initial, maximum)
        self._failures = 0

    def next(self) -> float:
        """The delay before the next retry; each call counts one more failure."""
        step = min(self.maximum, self.initial * 2.0 ** self._failures)
        self._failures += 1
        return random.uniform(step / 2, step)

    def reset(self) -> None:
        """The call worked: the next failure waits `initial` again."""
        self._failures = 0


class FailureLog:
    """Logs the failures of a retry loop at WARNING: the first at once, then at most one line per
    `interval` seconds with how many failed since, and one INFO line when it works again."""

    def __init__(self, logger: logging.Logger, what: str, interval: float = 10.0) -> None:
        self._log = logger
        self._what = what
        self._interval = interval
        self._failures = 0  # since the loop last worked
        self._unlogged = 0  # since the last line
        self._last_line = 0.0

    def failed(self, exc: BaseException) -> None:
        self._failures += 1
        self._unlogged += 1
        now = time.monotonic()
        if self._failures == 1:
            self._log.warning("%s failed; retrying with backoff: %s: %s", self._what, type(exc).__name__, exc)
        elif now - self._last_line >= self._interval:
            self._log.warning("%s failed %d more times in the last %.0f s; still retrying: %s: %s", self._what,
                              self._unlogged, now - self._last_line, type(exc).__name__, exc)
        else:
            return
        self._unlogged = 0
        self._last_line = now

    def recovered(self) -> None:
        """The call worked; logged when it had failed."""
        if self._failures:
            self._log.info("%s works again after %d failures", self._what, self._failures)
        self._failures = self._unlogged = 0
