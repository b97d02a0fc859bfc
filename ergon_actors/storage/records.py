"""How the SQLite and Redis stores keep a Failure in their bytes: the database format.

It is owned here, not by the wire codec, so a change of the actors' envelope never changes what
is on disk. The format: a msgpack ext of code 64 whose payload is the msgpack array
[type, message, retryable, traceback, args] (the bytes written since the first schema version).
"""

from __future__ import annotations

import msgpack

from ..core import Failure
from ..errors import DecodeError

__all__ = ["dump_failure", "load_failure"]

_FAILURE = 64


def dump_failure(failure: Failure) -> bytes:
    fields = [failure.type, failure.message, failure.retryable, failure.traceback, failure.args]
    data: bytes = msgpack.packb(msgpack.ExtType(_FAILURE, msgpack.packb(fields, use_bin_type=True)))
    return data


def load_failure(data: bytes) -> Failure:
    """The Failure stored as `data`; DecodeError if the bytes are not one."""
    try:
        stored = msgpack.unpackb(data)
        if isinstance(stored, msgpack.ExtType) and stored.code == _FAILURE:
            fields = msgpack.unpackb(stored.data)
            if isinstance(fields, list) and 2 <= len(fields) <= 5:
                return Failure(*fields)
    except ValueError:  # msgpack's errors are ValueErrors
        pass
    raise DecodeError(f"stored failure of {len(data)} bytes is not in the store's format")
