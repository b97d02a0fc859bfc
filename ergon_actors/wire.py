"""The envelope every actor message travels in, and its msgpack codec with bounded decoding.

A message is [protocol version, kind, body]. A `Codec` is built once from (ext code, class)
pairs: each registered frozen dataclass travels as a msgpack ext type whose payload is its field
values in order, and errors travel as (class name, message, attributes). Decoding a peer's bytes
is bounded (lengths, ext nesting) and every record is checked against its field annotations:
anything malformed is a ProtocolError, never another exception and never a crash. A record with
wrong fields decodes to a ProtocolError instance in its place, so the one request or answer that
carried it fails and the rest of the message is used.

The journal's commands and their codec live with the stores (`storage.commands`); the module
functions `pack` and `unpack` here speak the control messages, which carry no records.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from operator import attrgetter
from typing import Any, TypeVar

import msgpack

from . import errors
from .errors import ErgonError, ProtocolError

__all__ = ["Codec", "pack", "unpack", "PROTOCOL_VERSION", "ERROR_CODE", "MAX_EXT_DEPTH",
           "MAX_ARRAY_LEN", "MAX_MAP_LEN"]

PROTOCOL_VERSION = 1
ERROR_CODE = 63  # an ErgonError: [class name, message, {attribute: scalar}]
MAX_EXT_DEPTH = 4  # ext payloads inside ext payloads; the deepest record (Claim > FlowRecord > Failure) is 3
MAX_ARRAY_LEN = 1 << 20  # items of one array: bounds what a header claiming billions makes us allocate
MAX_MAP_LEN = 4096  # keys of one map (maps carry counts and statistics only)

_SCALARS = frozenset({str, bytes, int, float, bool, type(None)})
_SEQUENCES = frozenset({list, tuple})
# One packer without a default hook: _plain() turns every record into an ext type first,
# depth-first, so packing never re-enters the packer (and no Packer is built per message).
_PACKER = msgpack.Packer(use_bin_type=True)

T = TypeVar("T")
_Field = tuple[frozenset[type], frozenset[type] | None]  # the types a value may have; a tuple's items'
_contains = frozenset.__contains__
_Hook = Callable[[int, bytes], Any]
_INT64_MAX = 2**63 - 1  # msgpack carries ints up to 2**64 - 1; the stores keep signed 64-bit ones


@dataclass(frozen=True, slots=True)
class _Layout:
    """A record class as the codec sees it, derived once from its fields' annotations."""

    names: tuple[str, ...]
    required: int  # fields without a default
    allowed: tuple[frozenset[type], ...]  # per field, the types its value may have
    sequences: tuple[tuple[int, frozenset[type]], ...]  # tuple fields: (index, their items' types)
    integers: tuple[int, ...]  # indexes of the fields that may hold an int
    values: Callable[[Any], tuple[Any, ...]]  # an instance's field values, in order
    # The field types of every record that passed the check: the next one of the same types
    # passes with one lookup. Only valid combinations enter, so the set stays small.
    passed: set[tuple[type, ...]] = field(default_factory=set)


class Codec:
    """msgpack with registered frozen dataclasses as ext types; decoding bounded and validated.

    Args:
        ext_types: (ext code, class) pairs. A code is the wire format of its class: never reuse
            or renumber one. Field annotations may be str, bytes, int, float, bool, None, a
            registered class, tuple[X, ...] of those, and unions of them.
    """

    def __init__(self, ext_types: Iterable[tuple[int, type]] = ()) -> None:
        self._code: dict[type, int] = {}
        self._class: dict[int, type] = {}
        for code, cls in ext_types:
            if code == ERROR_CODE or code in self._class or not 0 <= code <= 127:
                raise ValueError(f"ext code {code} of {cls.__name__} is reserved or taken")
            self._code[cls] = code
            self._class[code] = cls
        self._layouts = {cls: self._layout(cls) for cls in self._code}
        hook: _Hook = _too_deep
        for _ in range(MAX_EXT_DEPTH):
            hook = self._hook(hook)
        self._ext_hook = hook  # decodes the ext payloads of a message, and those nested in them

    # -- encoding ---------------------------------------------------------------------------

    def dumps(self, obj: Any) -> bytes:
        """Encode registered records, ErgonErrors and builtins (TypeError for anything else)."""
        data: bytes = _PACKER.pack(self._plain(obj))
        return data

    def pack(self, kind: str, body: Any) -> bytes:
        """Encode one envelope: [protocol version, kind, body]."""
        return self.dumps((PROTOCOL_VERSION, kind, body))

    def pack_within(self, kind: str, items: Sequence[T], limit: int) -> tuple[list[bytes], list[tuple[T, int]]]:
        """Envelopes of `kind` whose bodies together carry `items` in order, none over `limit` bytes.

        Returns the frames, and each item too large to travel even alone with its size.
        """
        frame = self.pack(kind, items)
        if len(frame) <= limit and len(items) <= MAX_ARRAY_LEN:
            return [frame], []
        head = _PACKER.pack(PROTOCOL_VERSION) + _PACKER.pack(kind)
        room = limit - len(head) - 6  # the envelope's header and its body's array header at most
        frames: list[bytes] = []
        too_large: list[tuple[T, int]] = []
        group: list[bytes] = []
        size = 0
        for item in items:
            data = self.dumps(item)
            if len(data) > room:
                too_large.append((item, len(data)))
                continue
            if size + len(data) > room or len(group) == MAX_ARRAY_LEN:
                frames.append(_envelope(head, group))
                group, size = [], 0
            group.append(data)
            size += len(data)
        if group:
            frames.append(_envelope(head, group))
        return frames, too_large

    def _plain(self, obj: Any) -> Any:
        cls = type(obj)
        if cls in _SCALARS:
            return obj
        code = self._code.get(cls)
        if code is not None:
            return msgpack.ExtType(code, _PACKER.pack(list(map(self._plain, self._layouts[cls].values(obj)))))
        if cls is list or cls is tuple or cls is set or cls is frozenset:
            return [self._plain(item) for item in obj]
        if cls is dict:
            return {key: self._plain(value) for key, value in obj.items()}
        if isinstance(obj, str):  # a StrEnum such as FlowStatus travels as its value
            return str.__str__(obj)
        if isinstance(obj, ErgonError):
            state = {k: v for k, v in vars(obj).items() if type(v) in _SCALARS}
            return msgpack.ExtType(ERROR_CODE, _PACKER.pack([cls.__name__, str(obj), state]))
        raise TypeError(f"cannot send {cls.__qualname__} on the wire")

    # -- decoding ---------------------------------------------------------------------------

    def loads(self, data: bytes) -> Any:
        """Decode bytes from a peer; ProtocolError for anything malformed."""
        try:
            return self._loads(data, self._ext_hook)
        except ProtocolError:
            raise
        except Exception as exc:  # msgpack's errors, MemoryError, unhashable map keys, ...
            raise ProtocolError(f"undecodable message ({len(data)} bytes): {type(exc).__name__}: "
                                f"{str(exc)[:200]}") from None

    def unpack(self, frame: bytes) -> tuple[str, Any]:
        """Decode one envelope into (kind, body); ProtocolError for anything malformed."""
        message = self.loads(frame)
        if not (type(message) is list and len(message) == 3 and type(message[1]) is str):
            raise ProtocolError(f"malformed envelope: {_shape(message)}")
        if message[0] != PROTOCOL_VERSION:
            raise ProtocolError(f"protocol version {_shape(message[0])} not supported "
                                f"(this side speaks {PROTOCOL_VERSION})")
        return message[1], message[2]

    @staticmethod
    def _loads(data: bytes, hook: _Hook) -> Any:
        size = len(data)
        if size <= MAX_MAP_LEN:  # msgpack's defaults bound every length by the size: as below, but faster
            return msgpack.unpackb(data, ext_hook=hook)
        return msgpack.unpackb(data, ext_hook=hook, max_str_len=size, max_bin_len=size, max_ext_len=size,
                               max_array_len=min(size, MAX_ARRAY_LEN), max_map_len=MAX_MAP_LEN)

    def _hook(self, inner: _Hook) -> _Hook:
        """The ext hook of one nesting level: it decodes a payload with `inner` as the hook for the
        ext payloads inside it. Each level is a nested msgpack decode, so the levels are counted:
        unbounded, 200 of them overflowed the C stack."""
        classes, layouts, loads = self._class, self._layouts, self._loads

        def hook(code: int, data: bytes) -> Any:
            cls = classes.get(code)
            if cls is None:
                if code != ERROR_CODE:
                    raise ProtocolError(f"unknown ext type {code} on the wire")
                return _error(loads(data, inner))
            values = loads(data, inner)
            layout = layouts[cls]
            wide = 0xCF in data  # an int over 2**63 - 1 travels as a uint64, whose marker is 0xcf
            if (type(values) is list and tuple(map(type, values)) in layout.passed
                    and not layout.sequences and not wide):
                return cls(*values)
            return _check(cls, layout, values, wide)

        return hook

    def _layout(self, cls: type) -> _Layout:
        hints = typing.get_type_hints(cls)
        names = tuple(f.name for f in fields(cls))
        specs = [self._field(hints[name], f"{cls.__name__}.{name}") for name in names]
        values: Callable[[Any], tuple[Any, ...]] = attrgetter(*names) if len(names) > 1 else _fields_of(names)
        return _Layout(names, sum(1 for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING),
                       tuple(allowed for allowed, _ in specs),
                       tuple((i, items) for i, (_, items) in enumerate(specs) if items is not None),
                       tuple(i for i, (allowed, _) in enumerate(specs) if int in allowed),
                       values)

    def _field(self, hint: Any, where: str) -> _Field:
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            parts = [self._field(arg, where) for arg in typing.get_args(hint)]
            items = [i for _, i in parts if i is not None]
            if len(items) > 1:
                raise TypeError(f"{where}: a union of several tuple types cannot travel on the wire")
            return frozenset().union(*(a for a, _ in parts)), (items[0] if items else None)
        if typing.get_origin(hint) is tuple:
            item, ellipsis = typing.get_args(hint)
            if ellipsis is not Ellipsis:
                raise TypeError(f"{where}: only tuple[X, ...] fields can travel, not {hint}")
            return _SEQUENCES, self._field(item, where)[0]
        if hint is float:
            return frozenset({float, int}), None
        if hint in _SCALARS or hint is None or hint in self._code:
            return frozenset({type(None) if hint is None else hint}), None
        raise TypeError(f"{where}: a field of type {hint} cannot travel on the wire")


def _fields_of(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """The field values of a record with one field or none (attrgetter gives a tuple for two or more)."""
    if not names:
        return lambda obj: ()
    get = attrgetter(names[0])
    return lambda obj: (get(obj),)


def _error(values: Any) -> ErgonError:
    """An ErgonError from [class name, message, {attribute: scalar}]; unknown names give ErgonError."""
    if not (type(values) is list and len(values) == 3 and type(values[0]) is str and type(values[1]) is str
            and type(values[2]) is dict
            and all(type(k) is str and type(v) in _SCALARS for k, v in values[2].items())):
        return ProtocolError(f"malformed error: {_shape(values)}")
    name, message, state = values
    kind = getattr(errors, name, None)
    if not (isinstance(kind, type) and issubclass(kind, ErgonError)):
        kind = ErgonError
    exc = kind.__new__(kind)
    exc.args = (message,)
    vars(exc).update(state)
    return exc


def _envelope(head: bytes, items: list[bytes]) -> bytes:
    """[version, kind, [items]] from the encoded version and kind and the encoded items."""
    header: bytes = _PACKER.pack_array_header(len(items))
    return b"\x93" + head + header + b"".join(items)


def _too_deep(code: int, data: bytes) -> Any:
    raise ProtocolError(f"ext payloads nested deeper than {MAX_EXT_DEPTH}")


def _check(cls: type, layout: _Layout, values: Any, wide: bool) -> Any:
    """The record, once its field count and types, its ints (if `wide`: maybe over 64 bits) and
    the items of its tuple fields are checked; or the ProtocolError saying what is wrong."""
    if not (type(values) is list and layout.required <= len(values) <= len(layout.allowed)
            and all(map(_contains, layout.allowed, map(type, values)))):
        return _explain(cls, layout, values)
    layout.passed.add(tuple(map(type, values)))
    if wide and any(type(values[i]) is int and values[i] > _INT64_MAX for i in layout.integers if i < len(values)):
        return _explain(cls, layout, values)
    for i, items in layout.sequences:
        if i < len(values) and type(values[i]) in _SEQUENCES:
            if not all(map(items.__contains__, map(type, values[i]))):
                return _explain(cls, layout, values)
            values[i] = tuple(values[i])
    return cls(*values)


def _explain(cls: type, layout: _Layout, values: Any) -> ProtocolError:
    """What is wrong with the field values of a record that failed the check."""
    if type(values) is not list or not layout.required <= len(values) <= len(layout.allowed):
        return ProtocolError(f"malformed {cls.__name__}: {len(layout.allowed)} fields expected, "
                             f"got {_shape(values)}")
    # values may omit the trailing fields that have defaults
    for name, allowed, value in zip(layout.names, layout.allowed, values, strict=False):
        if type(value) not in allowed:
            return _malformed(cls, name, allowed, value)
        if type(value) is int and value > _INT64_MAX:
            return ProtocolError(f"malformed {cls.__name__}.{name}: {value} is outside the signed 64-bit range")
    for i, items in layout.sequences:
        if i < len(values) and type(values[i]) in _SEQUENCES:
            bad = [item for item in values[i] if type(item) not in items]
            if bad:
                return _malformed(cls, f"{layout.names[i]} item", items, bad[0])
    return ProtocolError(f"malformed {cls.__name__}")  # not reached: _record found a fault


def _malformed(cls: type, name: str, allowed: frozenset[type], value: Any) -> ProtocolError:
    got = f": {value}" if type(value) is ProtocolError else f", got {type(value).__name__}"
    return ProtocolError(f"malformed {cls.__name__}.{name}: {_type_names(allowed)} expected{got}")


def _shape(value: Any) -> str:
    """What a value is, for an error message, without printing a peer's (maybe huge) data."""
    if type(value) in (list, dict):
        return f"{type(value).__name__} of {len(value)}"
    if type(value) in (int, float, bool, type(None)):
        return repr(value)
    return type(value).__name__


def _type_names(allowed: frozenset[type]) -> str:
    return " or ".join(sorted("None" if t is type(None) else t.__name__ for t in allowed))


_CONTROL = Codec()
pack: Callable[[str, Any], bytes] = _CONTROL.pack
unpack: Callable[[bytes], tuple[str, Any]] = _CONTROL.unpack
