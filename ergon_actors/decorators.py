"""@flow_type, @flow and @step: mark a dataclass as a flow, its entry point and its durable steps.

The marks are PyErgon's attributes (`_is_ergon_step`, `_step_depends_on`, `_is_ergon_flow`,
`_ergon_steps`, `type_id()`, ...), so code that inspects decorated classes works on both.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast, overload

from . import codec
from .core import RetryPolicy
from .core.queues import Queue
from .executor.child import PendingChild
from .executor.context import StepOptions, call_step
from .executor.definition import FlowDefinition, build_flow, definition_of, encode_args

__all__ = ["flow_type", "flow", "step", "FlowDefinition", "definition_of", "encode_args", "build_flow"]


_C = TypeVar("_C", bound=type)
_F = TypeVar("_F", bound=Callable[..., Any])


def _mark(target: object, **marks: object) -> None:
    """Set the marks read back by executor/definition.py (attributes no type checker knows of)."""
    for attr, value in marks.items():
        setattr(target, attr, value)


@overload
def flow_type(cls: _C, *, invokable: object = None, name: str | None = None, type_id: str | None = None,
              retry_policy: RetryPolicy | None = None, queue: Queue | None = None) -> _C: ...
@overload
def flow_type(cls: None = None, *, invokable: object = None, name: str | None = None, type_id: str | None = None,
              retry_policy: RetryPolicy | None = None, queue: Queue | None = None) -> Callable[[_C], _C]: ...
def flow_type(cls: _C | None = None, *, invokable: object = None, name: str | None = None,
              type_id: str | None = None, retry_policy: RetryPolicy | None = None,
              queue: Queue | None = None) -> _C | Callable[[_C], _C]:
    """Mark a class as a flow type. Use under @dataclass; its fields are the flow's arguments.

    Registers the class's module with the codec, so its dataclasses, enums and exceptions
    decode.

    Args:
        name: the type name stored in the journal (default: the class name); `type_id` is
            PyErgon's name for it.
        retry_policy: the flow's retry policy when its @flow method names none.
        invokable: the result type when the flow runs as a child flow (documentation only).
        queue: the named queue its flows are scheduled onto (default: the default queue); a
            worker serving the class declares the queue's limits.
    """
    if queue is not None and not isinstance(queue, Queue):
        raise TypeError(f"flow_type(queue=...) takes a Queue, got {type(queue).__name__}")
    def mark(cls: _C) -> _C:
        type_name = name or type_id or cls.__name__
        steps = [n for n, v in vars(cls).items() if getattr(v, "_is_ergon_step", False)]
        _mark(cls, __ergon_flow_type__=type_name, __ergon_invokable__=invokable, _is_ergon_flow=True,
              _ergon_retry_policy=retry_policy, _ergon_queue=queue, _ergon_steps=steps,
              type_id=staticmethod(lambda: type_name))
        if "invoke" not in vars(cls):
            _mark(cls, invoke=_invoke)
        codec.register_module(cls.__module__)
        return cls
    return mark if cls is None else mark(cls)


def _invoke(self: object, child: object) -> PendingChild[Any]:
    """Start `child` as a child flow of this flow: `await self.invoke(child).result()`."""
    return PendingChild.of(child)


@overload
def flow(fn: _F, *, retry_policy: RetryPolicy | None = None, timeout: float | None = None) -> _F: ...
@overload
def flow(fn: None = None, *, retry_policy: RetryPolicy | None = None,
         timeout: float | None = None) -> Callable[[_F], _F]: ...
def flow(fn: _F | None = None, *, retry_policy: RetryPolicy | None = None,
         timeout: float | None = None) -> _F | Callable[[_F], _F]:
    """Mark a flow's entry method. A class may have several; the caller then names the one to
    run (`Executor.run(lambda f: f.method())`, `Worker.register(cls, lambda f: f.method())`).

    Args:
        retry_policy: a failed run is tried again (from its journal) as the policy allows.
        timeout: seconds from scheduling after which the flow fails with FlowTimeoutError.
    """
    def mark(fn: _F) -> _F:
        _mark(fn, _is_ergon_flow_method=True, _flow_method_name=fn.__name__, _flow_retry_policy=retry_policy,
              _flow_timeout=timeout)
        return fn
    return mark if fn is None else mark(fn)


@overload
def step(fn: _F, *, name: str | None = None, retry_policy: RetryPolicy | None = None,
         timeout: float | None = None, depends_on: str | list[str] | None = None,
         inputs: dict[str, str] | None = None) -> _F: ...
@overload
def step(fn: None = None, *, name: str | None = None, retry_policy: RetryPolicy | None = None,
         timeout: float | None = None, depends_on: str | list[str] | None = None,
         inputs: dict[str, str] | None = None) -> Callable[[_F], _F]: ...
def step(fn: _F | None = None, *, name: str | None = None,
         retry_policy: RetryPolicy | None = None, timeout: float | None = None,
         depends_on: str | list[str] | None = None,
         inputs: dict[str, str] | None = None) -> _F | Callable[[_F], _F]:
    """Mark an async method as a durable step: its result is journaled and replayed, never re-run.

    Called outside a running flow (or inside another step) the method runs as plain code.

    Args:
        name: the name journaled for the step (default: the method name).
        retry_policy: a failing step is tried again (each try and its due time journaled).
        timeout: seconds a single try may run before it fails with StepTimeoutError (default:
            the step_timeout its worker or executor was given; math.inf: no bound).
        depends_on: for `dag(flow)`: the steps that run before this one.
        inputs: for `dag(flow)`: {parameter: step} passes that step's result as the parameter
            (the step also runs after those steps).
    """
    def wrap(fn: _F) -> _F:
        options = StepOptions(name or fn.__name__, retry_policy, timeout)

        @functools.wraps(fn)
        def call(self: Any, *args: Any, **kwargs: Any) -> Awaitable[Any]:
            return call_step(options, fn, self, args, kwargs)

        wired = dict(inputs or {})
        deps = [depends_on] if isinstance(depends_on, str) else list(depends_on or ())
        _mark(call, _is_ergon_step=True, _step_name=options.name, _step_retry_policy=retry_policy,
              _step_depends_on=deps + [s for s in dict.fromkeys(wired.values()) if s not in deps],
              _step_inputs=wired)
        return cast(_F, call)  # same parameters; awaiting it gives the method's result
    return wrap if fn is None else wrap(fn)
