"""@flow_type, @flow and @step: mark a dataclass as a flow, its entry point and its durable steps."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Callable

from . import codec
from .core import RetryPolicy
from .errors import FlowDefinitionError, SerializationError

__all__ = ["flow_type", "flow", "step", "FlowDefinition", "definition_of", "encode_args", "build_flow"]


@dataclass(frozen=True, slots=True)
class FlowDefinition:
    """What the runtime needs to know about a flow class."""

    name: str
    cls: type
    entry: str
    retry_policy: RetryPolicy | None
    timeout: float | None = None
    invokable: object = None


def flow_type(cls: type | None = None, *, invokable: object = None, name: str | None = None):
    """Mark a class as a flow type. Use under @dataclass; its fields are the flow's arguments.

    Registers the class's module with the codec, so its dataclasses, enums and exceptions
    decode. `name` overrides the type name stored in the journal (default: the class name).
    """
    def mark(cls: type) -> type:
        cls.__ergon_flow_type__ = name or cls.__name__
        cls.__ergon_invokable__ = invokable
        if "invoke" not in vars(cls):
            cls.invoke = _invoke
        codec.register_module(cls.__module__)
        return cls
    return mark if cls is None else mark(cls)


def _invoke(self: object, child: object):
    """Start `child` as a child flow of this flow: `await self.invoke(child).result()`."""
    from .executor.child import PendingChild  # executor imports this module
    return PendingChild(child)


def flow(fn: Callable | None = None, *, retry_policy: RetryPolicy | None = None,
         timeout: float | None = None):
    """Mark the flow's entry method.

    Args:
        retry_policy: a failed run is tried again (from its journal) as the policy allows.
        timeout: seconds from scheduling after which the flow fails with FlowTimeoutError.
    """
    def mark(fn: Callable) -> Callable:
        fn.__ergon_flow__ = (retry_policy, timeout)
        return fn
    return mark if fn is None else mark(fn)


def step(fn: Callable | None = None, *, name: str | None = None,
         retry_policy: RetryPolicy | None = None, timeout: float | None = None):
    """Mark an async method as a durable step: its result is journaled and replayed, never re-run.

    Called outside a running flow (or inside another step) the method runs as plain code.

    Args:
        name: the name journaled for the step (default: the method name).
        retry_policy: a failing step is tried again (each try and its due time journaled).
        timeout: seconds a single try may run before it fails with StepTimeoutError.
    """
    def wrap(fn: Callable) -> Callable:
        from .executor.context import StepOptions, call_step  # executor imports this module
        options = StepOptions(name or fn.__name__, retry_policy, timeout)

        @functools.wraps(fn)
        def call(self: Any, *args: Any, **kwargs: Any):
            return call_step(options, fn, self, args, kwargs)

        return call
    return wrap if fn is None else wrap(fn)


def definition_of(cls: type) -> FlowDefinition:
    """The FlowDefinition of a @flow_type dataclass.

    Raises:
        FlowDefinitionError: not a dataclass, not marked @flow_type, or not exactly one @flow method.
    """
    cached = cls.__dict__.get("__ergon_definition__")
    if cached is not None:
        return cached
    where = f"{cls.__module__}.{cls.__qualname__}"
    if not hasattr(cls, "__ergon_flow_type__"):
        raise FlowDefinitionError(f"{where} is not a flow: decorate it with @flow_type (under @dataclass)")
    if not dataclasses.is_dataclass(cls):
        raise FlowDefinitionError(f"{where} is not a dataclass: write @dataclass above @flow_type")
    entries = [n for n in dir(cls) if hasattr(getattr(cls, n, None), "__ergon_flow__")]
    if len(entries) != 1:
        found = ", ".join(entries) or "none"
        raise FlowDefinitionError(f"{where} needs exactly one @flow method (found: {found})")
    entry = entries[0]
    retry_policy, timeout = getattr(cls, entry).__ergon_flow__
    definition = FlowDefinition(cls.__ergon_flow_type__, cls, entry, retry_policy, timeout,
                                cls.__ergon_invokable__)
    cls.__ergon_definition__ = definition
    return definition


def encode_args(instance: object) -> bytes:
    """Encode a flow instance's init fields.

    Raises:
        SerializationError: naming the flow, the field and the offending type.
    """
    definition = definition_of(type(instance))
    fields = {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance) if f.init}
    try:
        return codec.encode(fields)
    except SerializationError as exc:
        bad = next((k for k, v in fields.items() if not _encodes(v)), "?")
        raise SerializationError(
            f"cannot schedule flow {definition.name}: argument {bad!r} is of type {exc.type_name}, "
            f"which ergon_actors cannot store ({exc})", type_name=exc.type_name) from None


def _encodes(value: object) -> bool:
    try:
        codec.encode(value)
    except SerializationError:
        return False
    return True


def build_flow(definition: FlowDefinition, args: bytes) -> object:
    """Rebuild a flow instance from its journaled arguments."""
    return definition.cls(**codec.decode(args))
