"""Msgpack codec for user values (flow arguments and step results).

Builtins take msgpack's native fast path; other supported types become ext types.
Decoding never imports anything: enum/dataclass classes must be registered first.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import sys
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum
from functools import partial
from itertools import compress
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import msgpack

from .errors import DecodeError, SerializationError

__all__ = ["encode", "decode", "register_type", "register_module", "resolve_class", "args_hash"]

# Ext type codes. "packed" = nested msgpack produced by this codec.
#   code  type        payload
#   1     tuple       packed list of items
#   2     set         packed list of items, sorted by their encoding (deterministic bytes)
#   3     frozenset   same as set
#   4     int         ints outside msgpack's 64-bit range: signed big-endian bytes
#   5     datetime    packed [year, month, day, hour, minute, second, microsecond, fold, tz]
#   6     date        packed proleptic Gregorian ordinal
#   7     time        packed [hour, minute, second, microsecond, fold, tz]
#   8     timedelta   packed [days, seconds, microseconds]
#   9     UUID        16 raw bytes
#   10    Decimal     ASCII str(value)
#   11    Enum        packed ["module:qualname", value]
#   12    dataclass   packed ["module:qualname", {field_name: value}] (init=True fields only)
#   13    bytearray   raw bytes
#   14    numpy       packed [dtype.str, shape (nil: a numpy scalar), raw C-order bytes]; no object dtypes
# tz is nil (naive) | int offset in µs (datetime.timezone) | [offset µs, name] | str ZoneInfo key
_TUPLE, _SET, _FROZENSET, _BIGINT, _DATETIME, _DATE, _TIME = 1, 2, 3, 4, 5, 6, 7
_TIMEDELTA, _UUID, _DECIMAL, _ENUM, _DATACLASS, _BYTEARRAY, _NUMPY = 8, 9, 10, 11, 12, 13, 14

_PACKER_OPTS: dict[str, Any] = {"strict_types": True, "use_bin_type": True, "datetime": False}
_POOL_MAX = 8
_MAX_DEPTH = 512  # msgpack's own nesting limit is 511
_US = timedelta(microseconds=1)
_MASK63 = (1 << 63) - 1
_RAW = frozenset({bytearray, memoryview})  # msgpack packs these natively as bin -> would decode as bytes
_NATIVE = frozenset({list, dict})  # containers msgpack walks itself (never reach `default`)
_SCAN = _RAW | _NATIVE

# ExtType.__new__ re-validates its arguments in Python; ours are always (int, bytes).
_Ext = partial(tuple.__new__, msgpack.ExtType)
_registered: dict[str, type] = {}
_trusted_modules: set[str] = set()
_dc_fields: dict[type, tuple[str, ...]] = {}


def _type_name(cls: type) -> str:
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _unsupported(obj: object, detail: str = "", path: str = "") -> SerializationError:
    name = _type_name(type(obj))
    where = f" at {path}" if path else ""
    exc = SerializationError(f"cannot encode value of type {name}{where}{detail} (supported: builtins, "
                             "datetime types, UUID, Decimal, Enum, dataclasses, numpy arrays)", type_name=name)
    if not path:
        exc._codec_info = (obj, detail)  # type: ignore[attr-defined]  # encode() adds the path
    return exc


# --------------------------------------------------------------------------- encoding

def _pack(obj: Any) -> bytes:  # dispatched on type(obj), which mypy does not narrow through `t`
    t = type(obj)
    if t is list:  # cheap first-level check; _has_raw scans deeper only when needed
        if not _SCAN.isdisjoint(map(type, obj)) and _has_raw(obj):
            obj = _replace_raw(obj)
    elif t is dict:
        if not _SCAN.isdisjoint(map(type, obj.values())) and _has_raw(obj):
            obj = _replace_raw(obj)
    elif t in _RAW:
        obj = _replace_raw(obj)
    try:
        packer = _POOL.pop()  # list.pop/append are atomic: the pool is thread-safe and re-entrant
    except IndexError:
        packer = msgpack.Packer(default=_default, **_PACKER_OPTS)
    data = packer.pack(obj)  # on error the packer is dropped rather than returned to the pool
    if len(_POOL) < _POOL_MAX:
        _POOL.append(packer)
    return data


def _has_raw(obj: object) -> bool:
    """Whether a bytearray/memoryview hides in nested lists/dicts; scans level by level at C speed."""
    level = [obj]
    for _ in range(_MAX_DEPTH):
        refs = gc.get_referents(*level)  # items of lists; values (and non-str keys) of dicts
        if _SCAN.isdisjoint(map(type, refs)):
            return False
        if not _RAW.isdisjoint(map(type, refs)):
            return True
        level = list(compress(refs, map(_NATIVE.__contains__, map(type, refs))))
    return False


def _replace_raw(obj: Any) -> Any:
    t = type(obj)
    if t is list:
        return [_replace_raw(x) for x in obj]
    if t is dict:
        return {_replace_raw(k): _replace_raw(v) for k, v in obj.items()}
    if t is bytearray:
        return _Ext((_BYTEARRAY, bytes(obj)))
    if t is memoryview:
        raise _unsupported(obj)
    return obj


def _ext(code: int, payload: object) -> msgpack.ExtType:
    return _Ext((code, _pack(payload)))


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    return b"\xdc" + n.to_bytes(2, "big") if n < 0x10000 else b"\xdd" + n.to_bytes(4, "big")


def _set_encoder(code: int) -> Callable[[Any], msgpack.ExtType]:
    def encode_set(obj: Any) -> msgpack.ExtType:
        items = sorted(map(_pack, obj))
        return _Ext((code, _array_header(len(items)) + b"".join(items)))
    return encode_set


def _encode_tz(tz: Any) -> object:
    if tz is None:
        return None
    if type(tz) is timezone:
        args = tz.__getinitargs__()  # type: ignore[attr-defined]  # pickle's view: the name only if given
        return args[0] // _US if len(args) == 1 else [args[0] // _US, args[1]]
    if type(tz) is ZoneInfo and tz.key:
        return tz.key
    raise _unsupported(tz, " (tzinfo must be datetime.timezone or zoneinfo.ZoneInfo with a key)")


def _decode_tz(tz: Any) -> Any:
    if tz is None:
        return None
    if type(tz) is int:
        return timezone(tz * _US)
    if type(tz) is str:
        return ZoneInfo(tz)
    return timezone(tz[0] * _US, tz[1])


def _encode_enum(obj: Any) -> msgpack.ExtType:
    cls = type(obj)
    return _ext(_ENUM, [f"{cls.__module__}:{cls.__qualname__}", obj.value])


def _encode_dataclass(obj: Any) -> msgpack.ExtType:
    cls = type(obj)
    names = _dc_fields.get(cls)
    if names is None:
        names = _dc_fields[cls] = tuple(f.name for f in dataclasses.fields(cls) if f.init)
    return _ext(_DATACLASS, [f"{cls.__module__}:{cls.__qualname__}", {n: getattr(obj, n) for n in names}])


def _encode_numpy(obj: Any) -> msgpack.ExtType:
    """A numpy array or scalar by dtype, shape and bytes (numpy is loaded: the value exists)."""
    if obj.dtype.hasobject:
        raise _unsupported(obj, " of dtype object")
    np = sys.modules["numpy"]
    if isinstance(obj, np.ndarray):
        return _ext(_NUMPY, [obj.dtype.str, list(obj.shape), np.ascontiguousarray(obj).tobytes()])
    return _ext(_NUMPY, [obj.dtype.str, None, obj.tobytes()])


def _decode_numpy(data: bytes) -> object:
    try:
        import numpy as np
    except ImportError:
        raise DecodeError("a stored numpy value needs numpy installed to decode") from None
    dtype_name, shape, raw = _unpack(data)
    dtype = np.dtype(dtype_name)
    if dtype.hasobject:
        raise DecodeError(f"stored numpy dtype {dtype_name!r} holds Python objects")
    values = np.frombuffer(raw, dtype=dtype)
    return values[0] if shape is None else values.reshape(shape).copy()


_ENCODERS: dict[type, Callable[[Any], msgpack.ExtType]] = {
    tuple: lambda v: _ext(_TUPLE, list(v)),
    set: _set_encoder(_SET),
    frozenset: _set_encoder(_FROZENSET),
    int: lambda v: _Ext((_BIGINT, v.to_bytes(v.bit_length() // 8 + 1, "big", signed=True))),
    datetime: lambda v: _ext(_DATETIME, [v.year, v.month, v.day, v.hour, v.minute, v.second,
                                         v.microsecond, v.fold, _encode_tz(v.tzinfo)]),
    date: lambda v: _ext(_DATE, v.toordinal()),
    time: lambda v: _ext(_TIME, [v.hour, v.minute, v.second, v.microsecond, v.fold, _encode_tz(v.tzinfo)]),
    timedelta: lambda v: _ext(_TIMEDELTA, [v.days, v.seconds, v.microseconds]),
    UUID: lambda v: _Ext((_UUID, v.bytes)),
    Decimal: lambda v: _Ext((_DECIMAL, str(v).encode("ascii"))),
}


def _default(obj: object) -> msgpack.ExtType:
    """Called by msgpack only for values it cannot pack natively (strict_types: exact builtins only)."""
    cls = type(obj)
    encoder = _ENCODERS.get(cls)
    if encoder is None:
        if isinstance(obj, Enum):
            encoder = _ENCODERS[cls] = _encode_enum
        elif hasattr(cls, "__dataclass_fields__"):
            encoder = _ENCODERS[cls] = _encode_dataclass
        elif cls.__module__ == "numpy" and hasattr(obj, "dtype"):
            encoder = _ENCODERS[cls] = _encode_numpy
        else:
            raise _unsupported(obj)
    return encoder(obj)


_POOL: list[msgpack.Packer] = [msgpack.Packer(default=_default, **_PACKER_OPTS)]


def _locate(node: Any, target: object, depth: int = 0) -> str | None:
    """Path from node to target, e.g. "['items'][2]"; only used to enrich error messages."""
    if node is target:
        return ""
    if depth > 64:
        return None
    t = type(node)
    if t is list or t is tuple:
        children = [(f"[{i}]", x) for i, x in enumerate(node)]
    elif t is dict:
        children = [(f"[{k!r}]" if type(k) in (str, int) else "[<key>]", v) for k, v in node.items()]
        children += [("<key>", k) for k in node]
    elif t is set or t is frozenset:
        children = [("{...}", x) for x in node]
    elif isinstance(node, Enum):
        children = [(".value", node.value)]
    elif hasattr(t, "__dataclass_fields__") and not isinstance(node, type):
        children = [(f".{f.name}", getattr(node, f.name, None)) for f in dataclasses.fields(node)]
    else:
        return None
    for label, child in children:
        sub = _locate(child, target, depth + 1)
        if sub is not None:
            return label + sub
    return None


def encode(value: object) -> bytes:
    """Encode a supported value to msgpack bytes; raises SerializationError otherwise."""
    try:
        return _pack(value)
    except SerializationError as exc:
        info = exc.__dict__.pop("_codec_info", None)
        path = _locate(value, info[0]) if info is not None else None
        if not path:
            raise
        raise _unsupported(info[0], info[1], path) from None
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        name = _type_name(type(value))
        raise SerializationError(f"cannot encode value of type {name}: {exc}", type_name=name) from exc


# --------------------------------------------------------------------------- decoding

def resolve_class(name: str) -> type | None:
    """The registered (or trusted-module) dataclass/Enum/exception class for "module:qualname", else None.

    Never imports: a trusted module must already be in sys.modules.
    """
    cls = _registered.get(name)
    if cls is not None:
        return cls
    module_name, _, qualname = name.partition(":")
    obj: Any = sys.modules.get(module_name) if module_name in _trusted_modules else None
    if obj is None:
        return None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if (isinstance(obj, type) and obj.__module__ == module_name and obj.__qualname__ == qualname
            and (issubclass(obj, (Enum, BaseException)) or dataclasses.is_dataclass(obj))):
        return obj
    return None


def _resolve(name: str, kind: str) -> type:
    cls = resolve_class(name)
    if cls is not None:
        return cls
    module_name, _, qualname = name.partition(":")
    if module_name in _trusted_modules and module_name not in sys.modules:
        raise DecodeError(f"cannot decode {kind} {name!r}: module {module_name!r} is trusted but "
                          "not imported; import it before decoding")
    raise DecodeError(f"refusing to decode {kind} {name!r}: type is not registered; call "
                      f"ergon_actors.codec.register_type({qualname}) or register_module({module_name!r}), "
                      "or decorate the flow with @flow_type (which registers its module)")


def _decode_enum(data: bytes) -> Enum:
    name, value = _unpack(data)
    cls = _resolve(name, "enum")
    if not issubclass(cls, Enum):
        raise DecodeError(f"{name!r} is not an Enum class")
    return cls(value)


def _decode_dataclass(data: bytes) -> object:
    name, fields = _unpack(data)
    cls = _resolve(name, "dataclass")
    if not dataclasses.is_dataclass(cls):
        raise DecodeError(f"{name!r} is not a dataclass")
    return cls(**fields)


def _decode_datetime(data: bytes) -> datetime:
    y, mo, d, h, mi, s, us, fold, tz = _unpack(data)
    return datetime(y, mo, d, h, mi, s, us, _decode_tz(tz), fold=fold)


def _decode_time(data: bytes) -> time:
    h, mi, s, us, fold, tz = _unpack(data)
    return time(h, mi, s, us, _decode_tz(tz), fold=fold)


_DECODERS: dict[int, Callable[[bytes], object]] = {
    _TUPLE: lambda d: tuple(_unpack(d)),
    _SET: lambda d: set(_unpack(d)),
    _FROZENSET: lambda d: frozenset(_unpack(d)),
    _BIGINT: lambda d: int.from_bytes(d, "big", signed=True),
    _DATETIME: _decode_datetime,
    _DATE: lambda d: date.fromordinal(_unpack(d)),
    _TIME: _decode_time,
    _TIMEDELTA: lambda d: timedelta(*_unpack(d)),
    _UUID: lambda d: UUID(bytes=d),
    _DECIMAL: lambda d: Decimal(d.decode("ascii")),
    _ENUM: _decode_enum,
    _DATACLASS: _decode_dataclass,
    _BYTEARRAY: bytearray,
    _NUMPY: _decode_numpy,
}


def _ext_hook(code: int, data: bytes) -> object:
    decoder = _DECODERS.get(code)
    if decoder is None:
        raise DecodeError(f"unknown msgpack ext type code {code}")
    return decoder(data)


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True, ext_hook=_ext_hook)


def decode(data: bytes) -> object:
    """Decode bytes produced by encode(); raises DecodeError on corrupt data or unregistered types."""
    try:
        return _unpack(data)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"cannot decode msgpack payload: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- registry and hashing

def register_type(cls: type) -> type:
    """Allow decoding this dataclass, Enum or exception class; returns cls (usable as a decorator)."""
    if not isinstance(cls, type) or not (issubclass(cls, (Enum, BaseException)) or dataclasses.is_dataclass(cls)):
        raise TypeError(f"register_type() expects a dataclass, Enum or exception class, got {cls!r}")
    _registered[f"{cls.__module__}:{cls.__qualname__}"] = cls
    return cls


def register_module(module_name: str) -> None:
    """Trust every dataclass/Enum/exception class defined in this module (it must be imported first)."""
    _trusted_modules.add(module_name)


def args_hash(args: tuple[object, ...], kwargs: dict[str, object]) -> int:
    """Stable 63-bit hash of call arguments (same across processes and runs)."""
    items = sorted(kwargs.items())
    try:
        data = encode([list(args), dict(items)])  # keyword order never matters
    except SerializationError:
        parts = [_type_name(type(a)) for a in args] + [f"{k}={_type_name(type(v))}" for k, v in items]
        data = b"\x00types:" + "\x1f".join(parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") & _MASK63
