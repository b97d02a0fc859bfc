"""DropCounter: a malformed message costs a counter and at most one log line per interval per peer."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

__all__ = ["DropCounter"]

OTHER_PEERS = "other peers"


@dataclass
class _Window:
    count: int = 0
    reason: str = ""


class DropCounter:
    """Counts the messages a receive loop drops, and logs them at most once per `interval` per peer.

    The first drop from a peer is logged at once; the drops that follow within `interval`
    seconds are summed up in one line when it ends ("dropped 1,204 malformed messages from X in
    the last 10 s: last reason ..."). Beyond `max_peers` peers dropping at once, the others share
    one line, so neither the log nor this counter grows with the number of peers.
    Call `drop` from a running event loop: the summary is a timer on it.
    """

    def __init__(self, logger: logging.Logger, receiver: str, interval: float = 10.0,
                 max_peers: int = 32) -> None:
        self.total = 0
        self._log = logger
        self._receiver = receiver
        self._interval = interval
        self._max_peers = max_peers
        self._windows: dict[str, _Window] = {}

    def drop(self, peer: str, reason: object) -> None:
        """Count one dropped message from `peer`, dropped for `reason`."""
        self.total += 1
        if peer not in self._windows and len(self._windows) >= self._max_peers:
            peer = OTHER_PEERS
        window = self._windows.get(peer)
        if window is not None:
            window.count += 1
            window.reason = str(reason)
            return
        self._log.warning("%s dropped a malformed message from %s: %s", self._receiver, peer, reason)
        self._open(peer)

    def _open(self, peer: str) -> None:
        self._windows[peer] = _Window()
        asyncio.get_running_loop().call_later(self._interval, self._close, peer)

    def _close(self, peer: str) -> None:
        window = self._windows.pop(peer)
        if window.count:
            self._log.warning("%s dropped %s malformed %s from %s in the last %g s: last reason %s",
                              self._receiver, f"{window.count:,}", "message" if window.count == 1 else "messages",
                              peer, self._interval, window.reason)
            self._open(peer)  # still dropping: the next line comes an interval later at the earliest
