"""How the SQLite and Redis stores keep a Failure and a flow's crashes in their bytes: the
database format.

It is owned here, not by the wire codec, so a change of the actors' envelope never changes what
is on disk. A Failure: a msgpack ext of code 64 whose payload is the msgpack array
[type, message, retryable, traceback, args] (the bytes written since the first schema version).
A flow's crashes: a msgpack array of one array per Crash, its fields in order (the Redis store's
Lua writes false for None).
"""

from __future__ import annotations

import msgpack

from ..core import Crash, Failure
from ..errors import DecodeError

__all__ = ["dump_failure", "load_failure", "dump_crashes", "load_crashes"]

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


def dump_crashes(crashes: tuple[Crash, ...]) -> bytes:
    fields = [[c.at, c.worker_id, c.cause, c.exit_code, c.signal, c.position, c.step, c.alone] for c in crashes]
    data: bytes = msgpack.packb(fields)
    return data


def load_crashes(data: bytes | None) -> tuple[Crash, ...]:
    """The crashes stored as `data` (None: none); DecodeError if the bytes are not in the format."""
    if data is None:
        return ()
    try:
        return tuple(Crash(float(at), worker, cause, None if code is False else code,
                           None if number is False else number, position, None if step is False else step,
                           bool(alone))
                     for at, worker, cause, code, number, position, step, alone in msgpack.unpackb(data))
    except (ValueError, TypeError) as exc:  # msgpack's errors are ValueErrors; a wrong shape a TypeError
        raise DecodeError(f"stored crashes of {len(data)} bytes are not in the store's format: {exc}") from None
