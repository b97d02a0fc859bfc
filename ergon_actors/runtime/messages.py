"""Typed control messages between the supervisor and its actors, carried on the wire envelope.

Each message is a frozen dataclass. It travels as `wire.pack(TAG, [field values])`; a
heartbeat's stats travel inside it as `[STATS_TAG, field values]`. `decode` checks the tag, the
number of fields and the type of each one, and raises ProtocolError for anything else: a
malformed control message is dropped by its receiver, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from types import NoneType, UnionType
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from ..errors import ProtocolError
from ..wire import pack, unpack

__all__ = ["Buckets", "TypeCount", "WorkerStats", "JournalStats", "Ready", "Failed", "Heartbeat", "Drain", "Stop",
           "Drained", "Wake", "Message", "encode", "decode", "from_dict"]

T = TypeVar("T")


# -- heartbeat stats -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Buckets:
    """A histogram's figures: how many values fell in each bucket (runtime.stats has the bounds;
    the last bucket is past the highest bound), and their sum."""

    counts: tuple[int, ...] = ()
    total: float = 0.0


@dataclass(frozen=True, slots=True)
class TypeCount:
    """How many flows of a type ended with a status."""

    flow_type: str
    status: str
    count: int


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """A worker actor's figures: flows running now, and counts since the process started."""

    running: int = 0
    started: int = 0
    finished: int = 0
    abandoned: int = 0  # given up after a refused write (fenced) or a failed journal call
    halted: int = 0     # stopped at a step boundary by a drain
    resent: int = 0     # journal requests sent again after `resend_after` without an answer
    dropped: int = 0    # malformed messages dropped
    steps_started: int = 0    # step bodies run (replayed steps run none)
    steps_completed: int = 0
    steps_failed: int = 0     # bodies that raised (a retry may follow)
    step_seconds: Buckets = Buckets()  # how long step bodies ran (completed or failed)
    flow_seconds: Buckets = Buckets()  # from a flow's creation to its end, for flows that ended here
    ended: tuple[TypeCount, ...] = ()  # flows that ended here (COMPLETE, FAILED, CANCELLED), by type


@dataclass(frozen=True, slots=True)
class JournalStats:
    """The journal actor's figures since the process started, and the health of its store."""

    commits: int = 0
    commands: int = 0
    largest: int = 0       # most commands in one commit
    fenced: int = 0        # writes refused for a stale lease epoch
    malformed: int = 0     # messages dropped as malformed
    store_failing_since: float | None = None  # wall time of the first failed commit of an outage
    store_error: str = ""  # the last error of that outage
    commit_seconds: Buckets = Buckets()   # how long the store took to commit a batch (outages included)
    batch_commands: Buckets = Buckets()   # commands per commit
    in_flight: int = 0     # batches whose commit is under way now (more than one on a pipelined store)

    @property
    def commands_per_commit(self) -> float:
        return self.commands / self.commits if self.commits else 0.0

    @property
    def store_ok(self) -> bool:
        return self.store_failing_since is None


# -- messages --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ready:
    """Actor -> supervisor: started and serving (a worker lists the flow types it serves)."""

    pid: int
    flow_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Failed:
    """Actor -> supervisor: could not start (bad module, store that cannot be opened); it exits 78."""

    reason: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Actor -> supervisor, at every beat from a thread: alive, with its figures, the seconds
    since its event loop last showed progress, and whether it is idle (then it beats less often)."""

    stats: WorkerStats | JournalStats
    loop_age: float = 0.0
    idle: bool = False


@dataclass(frozen=True, slots=True)
class Drain:
    """Supervisor -> actor: stop taking work, give work in flight `grace` seconds, then exit."""

    grace: float


@dataclass(frozen=True, slots=True)
class Stop:
    """Supervisor -> actor: finish what is under way (the journal: its commit) and exit."""


@dataclass(frozen=True, slots=True)
class Drained:
    """Actor -> supervisor, on its way out: drained, `cancelled` flows were cut mid-step."""

    cancelled: int


@dataclass(frozen=True, slots=True)
class Wake:
    """Journal -> its clients: work that may be claimed now was just committed."""


Message = Ready | Failed | Heartbeat | Drain | Stop | Drained | Wake

_TAGS: dict[type, str] = {Ready: "ready", Failed: "failed", Heartbeat: "hb", Drain: "drain", Stop: "stop",
                          Drained: "drained", Wake: "wake", WorkerStats: "worker", JournalStats: "journal",
                          Buckets: "buckets", TypeCount: "types"}
_MESSAGES = {_TAGS[cls]: cls for cls in get_args(Message)}


def encode(message: Message) -> bytes:
    """One envelope holding `message`."""
    return pack(_TAGS[type(message)], _values(message))


def decode(frame: bytes) -> Message:
    """The message in `frame`; ProtocolError if it is not a well-formed control message."""
    kind, body = unpack(frame)
    cls = _MESSAGES.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown control message {kind!r}")
    message: Message = _build(cls, body)
    return message


def _values(obj: Any) -> list[Any]:
    return [_value(getattr(obj, f.name)) for f in fields(obj)]


def _value(value: Any) -> Any:
    if is_dataclass(value):
        return [_TAGS[type(value)], *_values(value)]
    if isinstance(value, tuple):
        return [_value(v) for v in value]
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """A message or stats dataclass from its `dataclasses.asdict` form (JSON: tuples as lists)."""
    hints = get_type_hints(cls)
    return cls(**{f.name: _from_plain(hints[f.name], data[f.name]) for f in fields(cls)  # type: ignore[arg-type]
                  if f.name in data})


def _from_plain(tp: Any, value: Any) -> Any:
    if tp in _TAGS and isinstance(value, dict):
        return from_dict(tp, value)
    if get_origin(tp) is tuple and isinstance(value, list):
        return tuple(_from_plain(get_args(tp)[0], v) for v in value)
    return value


Check = Callable[[Any], Any]


def _build(cls: type, body: Any) -> Any:
    checks = _CHECKS[cls]
    if not isinstance(body, list) or len(body) != len(checks):
        raise ProtocolError(f"{cls.__name__} takes a list of {len(checks)} fields, got {_show(body)}")
    return cls(*(check(value) for check, value in zip(checks, body, strict=True)))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _exact(kind: type) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise ProtocolError(f"expected {kind.__name__}, got {_show(value)}")
        return value
    return check


def _float(value: Any) -> float:
    if type(value) not in (int, float):
        raise ProtocolError(f"expected a number, got {_show(value)}")
    return float(value)


def _none(value: Any) -> None:
    if value is not None:
        raise ProtocolError(f"expected None, got {_show(value)}")


def _tuple_of(item: Check) -> Check:
    def check(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise ProtocolError(f"expected a list, got {_show(value)}")
        return tuple(item(v) for v in value)
    return check


def _tagged(cls: type) -> Check:
    def check(value: Any) -> Any:
        if not (isinstance(value, list) and value and value[0] == _TAGS[cls]):
            raise ProtocolError(f"expected {cls.__name__}, got {_show(value)}")
        return _build(cls, value[1:])
    return check


def _either(checks: list[Check]) -> Check:
    def check(value: Any) -> Any:
        for one in checks:
            try:
                return one(value)
            except ProtocolError:
                pass
        raise ProtocolError(f"unexpected value {_show(value)}")
    return check


def _checker(tp: Any) -> Check:
    if tp in (int, str, bool):
        return _exact(tp)
    if tp is float:
        return _float
    if tp is NoneType:
        return _none
    if tp in _TAGS:
        return _tagged(tp)
    origin = get_origin(tp)
    if origin is tuple:
        return _tuple_of(_checker(get_args(tp)[0]))
    if origin in (Union, UnionType):
        return _either([_checker(arm) for arm in get_args(tp)])
    raise TypeError(f"no wire check for {tp!r}")  # a field type this module does not support


_CHECKS: dict[type, list[Check]] = {
    cls: [_checker(get_type_hints(cls)[f.name]) for f in fields(cls)] for cls in _TAGS}
