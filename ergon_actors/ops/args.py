"""A flow from JSON arguments, each field checked against the flow class's annotation.

JSON has no tuples, sets, datetimes, Decimals, UUIDs, enums or dataclasses: a field annotated
with one of those takes its JSON form (a list, an ISO 8601 string, a string or number, the
enum's value, an object of fields) and gets the annotated type; anything that does not fit is a
ConfigError naming the field, what it expects and what it got.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any
from uuid import UUID

from ..errors import ConfigError

__all__ = ["flow_from_json"]


class _Mismatch(Exception):
    def __init__(self, where: str, expected: str, value: Any) -> None:
        super().__init__(where)
        self.where = where
        self.expected = expected
        self.value = value


def flow_from_json(cls: type, fields: Any) -> object:
    """An instance of the dataclass `cls` from a JSON object of its fields.

    Raises:
        ConfigError: not an object, a field missing or unknown, or a value of the wrong type.
    """
    if not isinstance(fields, dict):
        raise ConfigError(f"the arguments of {cls.__name__} must be a JSON object of its fields, "
                          f"got {type(fields).__name__}")
    try:
        return _dataclass(cls, fields, "")
    except _Mismatch as exc:
        got = f"{type(exc.value).__name__} {exc.value!r}"[:200]
        raise ConfigError(f"{cls.__name__}{exc.where}: expected {exc.expected}, got {got}") from None


def _dataclass(cls: type, fields: dict[str, Any], where: str) -> object:
    hints = typing.get_type_hints(cls)
    known = [f for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(fields) - {f.name for f in known})
    missing = [f.name for f in known if f.name not in fields
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if unknown or missing:
        parts = ([f"unknown field(s) {', '.join(unknown)}"] if unknown else []) + (
            [f"missing field(s) {', '.join(missing)}"] if missing else [])
        names = ", ".join(f"{f.name}: {_name(hints[f.name])}" for f in known)
        raise ConfigError(f"{cls.__name__}{where}: {'; '.join(parts)} (its fields: {names})")
    return cls(**{name: _value(hints[name], value, f"{where}.{name}") for name, value in fields.items()})


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _value(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin is typing.Union or isinstance(hint, types.UnionType):
        for option in args:
            try:
                return _value(option, value, where)
            except _Mismatch:
                continue
        raise _Mismatch(where, " or ".join(_name(a) for a in args), value)
    if hint is type(None) or hint is None:
        if value is None:
            return None
        raise _Mismatch(where, "null", value)
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple, set, frozenset):
        return _sequence(origin or hint, args, value, where)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _Mismatch(where, "an object", value)
        item = args[1] if len(args) == 2 else Any
        return {k: _value(item, v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(hint, type):
        return _scalar(hint, value, where)
    return value  # an annotation this check does not know (a TypeVar, a Literal, ...): as given


def _sequence(kind: type, args: tuple[Any, ...], value: Any, where: str) -> Any:
    if not isinstance(value, list):
        raise _Mismatch(where, f"a list (for a {kind.__name__})", value)
    if kind is tuple and args and args[-1] is not Ellipsis:  # tuple[int, str]: one item per type
        if len(args) != len(value):
            raise _Mismatch(where, f"a list of {len(args)} items", value)
        return tuple(_value(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    item = args[0] if args else Any
    items = [_value(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    try:
        return kind(items)
    except TypeError:  # unhashable items for a set
        raise _Mismatch(where, f"hashable items (for a {kind.__name__})", value) from None


def _scalar(kind: type, value: Any, where: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind in (str, bytes):
        if isinstance(value, str):
            return value if kind is str else value.encode()
    elif issubclass(kind, Enum):
        try:
            return kind(value)
        except ValueError:
            raise _Mismatch(where, f"one of {[m.value for m in kind]}", value) from None
    elif kind in (datetime, date, Decimal, UUID):
        return _parsed(kind, value, where)
    elif dataclasses.is_dataclass(kind):
        if isinstance(value, dict):
            return _dataclass(kind, value, where)
    elif isinstance(value, kind):
        return value
    raise _Mismatch(where, kind.__name__, value)


def _parsed(kind: type, value: Any, where: str) -> Any:
    try:
        if kind is Decimal and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return Decimal(str(value))
        if isinstance(value, str):
            if kind is UUID:
                return UUID(value)
            parse = datetime.fromisoformat if kind is datetime else date.fromisoformat
            return parse(value.replace("Z", "+00:00") if kind is datetime else value)
    except (ValueError, InvalidOperation):
        pass
    expected = {Decimal: "a decimal (string or number)", UUID: "a UUID string"}.get(kind, "an ISO 8601 string")
    raise _Mismatch(where, f"{kind.__name__}: {expected}", value)
