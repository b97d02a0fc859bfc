"""Stored values for operators: decoded where the types are known, and lossless as JSON.

`load_modules` imports the user's modules (and trusts their types for decoding); `Value` holds
a stored value decoded, or the reason it could not be; `to_json` turns values, records and
details into JSON with nothing lost: datetimes as ISO 8601, bytes as {"$bytes": base64}, sets as
lists, Decimals and UUIDs as strings, dataclasses as objects, an undecodable value as
{"$undecodable": reason, "$bytes": base64}.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, UTC
from decimal import Decimal
from enum import Enum
from typing import Any
from collections.abc import Iterable
from uuid import UUID

from .. import codec
from ..errors import ErgonError, ModuleImportError

__all__ = ["Value", "decode", "load_modules", "to_json", "iso"]


def load_modules(names: Iterable[str]) -> None:
    """Import each module and trust its types for decoding stored values.

    Raises:
        ModuleImportError: a module is missing or raised while it was imported.
    """
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the user's module may raise anything at import
            raise ModuleImportError(name, f"{type(exc).__name__}: {exc}") from exc
        codec.register_module(name)


@dataclass(frozen=True, slots=True)
class Value:
    """A stored value: `value` once decoded, else `error` says why not (`data` holds its bytes)."""

    data: bytes
    value: Any = None
    error: str | None = None

    def __repr__(self) -> str:
        return repr(self.value) if self.error is None else f"<{len(self.data)} bytes: {self.error}>"


def decode(data: bytes | None) -> Value | None:
    """The stored bytes as a Value (None for None)."""
    if data is None:
        return None
    try:
        return Value(data, codec.decode(data))
    except ErgonError as exc:  # a type of a module this process did not load (see --module)
        return Value(data, error=str(exc))


def iso(seconds: float | None) -> str | None:
    """A store time (seconds since the epoch) as ISO 8601 in UTC, to the microsecond."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def to_json(obj: Any) -> Any:
    """`obj` as plain JSON types (dict, list, str, int, float, bool, None), losslessly."""
    if obj is None or (isinstance(obj, (bool, int, str)) and not isinstance(obj, Enum)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"$float": repr(obj)}
    if isinstance(obj, Value):
        if obj.error is not None:
            return {"$undecodable": obj.error, "$bytes": _b64(obj.data)}
        return to_json(obj.value)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$bytes": _b64(bytes(obj))}
    if isinstance(obj, (datetime, date, time)):
        return obj.isoformat()
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    if isinstance(obj, (Decimal, UUID)):
        return str(obj)
    if isinstance(obj, Enum):
        return to_json(obj.value)
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(to_json(k)): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        items = [to_json(v) for v in obj]
        try:
            return sorted(items)
        except TypeError:  # items of different kinds: keep the set's order
            return items
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return {"$repr": repr(obj)}
