"""What the runtime knows about a flow class: its definition, and its arguments as bytes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .. import codec
from ..core import RetryPolicy
from ..errors import DecodeError, FlowDefinitionError, SerializationError

__all__ = ["FlowDefinition", "definition_of", "encode_args", "build_flow"]


@dataclass(frozen=True, slots=True)
class FlowDefinition:
    """What the runtime needs to know about a flow class."""

    name: str
    cls: type
    entry: str
    retry_policy: RetryPolicy | None
    timeout: float | None = None
    invokable: object = None


def definition_of(cls: type) -> FlowDefinition:
    """The FlowDefinition of a @flow_type dataclass.

    Raises:
        FlowDefinitionError: not a dataclass, not marked @flow_type, or not exactly one @flow method.
    """
    cached = cls.__dict__.get("__ergon_definition__")
    if isinstance(cached, FlowDefinition):
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
    # the marks @flow_type set on the class: attributes no type checker knows of, hence getattr
    definition = FlowDefinition(getattr(cls, "__ergon_flow_type__"), cls, entry, retry_policy, timeout,  # noqa: B009
                                getattr(cls, "__ergon_invokable__"))  # noqa: B009
    setattr(cls, "__ergon_definition__", definition)  # noqa: B010
    return definition


def encode_args(instance: object) -> bytes:
    """Encode a flow instance's init fields.

    Raises:
        SerializationError: naming the flow, the field and the offending type.
    """
    definition = definition_of(type(instance))
    fields = {f.name: getattr(instance, f.name) for f in dataclasses.fields(definition.cls) if f.init}
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
    arguments = codec.decode(args)
    if not isinstance(arguments, dict):
        raise DecodeError(f"journaled arguments of a {definition.name} flow are not a mapping of its fields")
    return definition.cls(**arguments)
