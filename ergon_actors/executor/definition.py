"""What the runtime knows about a flow class: its definition, and its arguments as bytes."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from .. import codec
from ..core import RetryPolicy
from ..core.queues import Queue
from ..errors import ConfigError, DecodeError, FlowArgumentsError, FlowDefinitionError, SerializationError

__all__ = ["FlowDefinition", "definition_of", "instance_definition", "instance_args", "encode_args",
           "build_flow", "QueuePlacement", "placement"]


@dataclass(frozen=True, slots=True)
class FlowDefinition:
    """What the runtime needs to know about a flow class.

    `entry` is its @flow method; None when it has several, and the caller names the one to run.
    """

    name: str
    cls: type
    entry: str | None
    retry_policy: RetryPolicy | None
    timeout: float | None = None
    invokable: object = None
    queue: Queue | None = None

    def entry_name(self) -> str:
        """The @flow method to run.

        Raises:
            FlowDefinitionError: the class has several @flow methods, so the caller must name one.
        """
        if self.entry is None:
            entries = ", ".join(n for n in dir(self.cls) if _is_entry(getattr(self.cls, n, None)))
            which = f"several @flow methods ({entries})" if entries else "no @flow method"
            raise FlowDefinitionError(
                f"{self.cls.__module__}.{self.cls.__qualname__} has {which}: name the one to run, e.g. "
                "Executor.run(lambda f: f.method()) or Worker.register(cls, lambda f: f.method())")
        return self.entry

    def entry_call(self, instance: object) -> Awaitable[Any]:
        """Call the flow's @flow method on `instance` (FlowDefinitionError: it has several)."""
        result: Awaitable[Any] = getattr(instance, self.entry_name())()
        return result


def _is_entry(attr: object) -> bool:
    return getattr(attr, "_is_ergon_flow_method", False) is True


def definition_of(cls: type) -> FlowDefinition:
    """The FlowDefinition of a @flow_type dataclass.

    Raises:
        FlowDefinitionError: not a dataclass, not marked @flow_type, or without a @flow method.
    """
    cached = cls.__dict__.get("__ergon_definition__")
    if isinstance(cached, FlowDefinition):
        return cached
    where = f"{cls.__module__}.{cls.__qualname__}"
    if not hasattr(cls, "__ergon_flow_type__"):
        raise FlowDefinitionError(f"{where} is not a flow: decorate it with @flow_type (under @dataclass)")
    if not dataclasses.is_dataclass(cls):
        raise FlowDefinitionError(f"{where} is not a dataclass: write @dataclass above @flow_type")
    entries = [n for n in dir(cls) if _is_entry(getattr(cls, n, None))]
    if not entries:
        raise FlowDefinitionError(f"{where} has no @flow method")
    entry = entries[0] if len(entries) == 1 else None
    # the marks @flow and @flow_type set: attributes no type checker knows of, hence getattr
    method = getattr(cls, entries[0]) if entry is not None else None
    retry_policy = getattr(method, "_flow_retry_policy", None) or getattr(cls, "_ergon_retry_policy", None)
    definition = FlowDefinition(getattr(cls, "__ergon_flow_type__"), cls, entry, retry_policy,  # noqa: B009
                                getattr(method, "_flow_timeout", None), getattr(cls, "__ergon_invokable__"),  # noqa: B009
                                getattr(cls, "_ergon_queue", None))
    setattr(cls, "__ergon_definition__", definition)  # noqa: B010
    return definition


def instance_definition(flow: object) -> FlowDefinition:
    """The definition of a flow instance an Executor runs.

    A @flow_type dataclass's, as for workers; for any other object (PyErgon's Executor runs
    those) its class name and its @flow method if it has one. Such an object's fields are not
    journaled (see `instance_args`), so only an Executor given the object again resumes it.
    """
    cls = type(flow)
    if _journaled(cls):
        return definition_of(cls)
    entries = [n for n in dir(cls) if _is_entry(getattr(cls, n, None))]
    method = getattr(cls, entries[0]) if len(entries) == 1 else None
    return FlowDefinition(getattr(cls, "__ergon_flow_type__", cls.__name__), cls,
                          entries[0] if method is not None else None,
                          getattr(method, "_flow_retry_policy", None), getattr(method, "_flow_timeout", None))


def instance_args(flow: object) -> bytes:
    """The arguments journaled for a flow instance an Executor runs: a @flow_type dataclass's
    fields (see `encode_args`), none for any other object."""
    return encode_args(flow) if _journaled(type(flow)) else codec.encode({})


def _journaled(cls: type) -> bool:
    return hasattr(cls, "__ergon_flow_type__") and dataclasses.is_dataclass(cls)


def encode_args(instance: object) -> bytes:
    """Encode a flow instance's init fields.

    Raises:
        FlowArgumentsError: (a SerializationError) naming the flow, the field and the type.
    """
    definition = definition_of(type(instance))
    fields = {f.name: getattr(instance, f.name) for f in dataclasses.fields(definition.cls) if f.init}
    try:
        return codec.encode(fields)
    except SerializationError as exc:
        bad = next((k for k, v in fields.items() if not _encodes(v)), "?")
        raise FlowArgumentsError(
            f"cannot schedule flow {definition.name}: argument {bad!r} is of type {exc.type_name}, "
            f"which ergon_actors cannot store ({exc})", type_name=exc.type_name) from None


def _encodes(value: object) -> bool:
    try:
        codec.encode(value)
    except SerializationError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class QueuePlacement:
    """Where a flow is scheduled: its named queue (None: the default queue), priority and key."""

    queue: Queue | None
    priority: int
    key: str | None

    @property
    def name(self) -> str | None:
        return None if self.queue is None else self.queue.name


PRIORITY_MAX = 2**31 - 1


def placement(flow: object, queue: Queue | str | None = None, priority: int | None = None) -> QueuePlacement:
    """The queue, priority and key of a flow instance: `queue` if given (a name: a queue without
    a key), else its class's (flow_type(queue=...)); `priority` if given, else the queue's.

    Raises:
        ConfigError: a bad queue name, priority or key.
    """
    chosen = definition_of(type(flow)).queue if queue is None else queue
    if isinstance(chosen, str):
        chosen = Queue(chosen)
    if priority is None:
        priority = 0 if chosen is None else chosen.priority
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > PRIORITY_MAX:
        raise ConfigError(f"priority must be an integer from {-PRIORITY_MAX} to {PRIORITY_MAX}, got {priority!r}")
    if chosen is None:
        return QueuePlacement(None, 0, None)
    return QueuePlacement(chosen, priority, chosen.key_of(flow))


def build_flow(definition: FlowDefinition, args: bytes) -> object:
    """Rebuild a flow instance from its journaled arguments."""
    arguments = codec.decode(args)
    if not isinstance(arguments, dict):
        raise DecodeError(f"journaled arguments of a {definition.name} flow are not a mapping of its fields")
    return definition.cls(**arguments)
