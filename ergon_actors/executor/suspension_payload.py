"""SuspensionPayload: what PyErgon's store API keeps as a timer's or signal's result."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SuspensionPayload"]


@dataclass(frozen=True)
class SuspensionPayload:
    """A wait's outcome: success, its data (bytes) and, for a failure, whether it is retryable."""

    success: bool
    data: bytes
    is_retryable: bool | None = None

    def __repr__(self) -> str:
        retryable = "" if self.is_retryable is None else f", retryable={self.is_retryable}"
        return f"SuspensionPayload(success={self.success}, data_len={len(self.data)}{retryable})"
