"""Every exception ergon_actors raises. This module imports nothing internal."""

from __future__ import annotations


class ErgonError(Exception):
    """Root of every error raised by ergon_actors."""


class ConfigError(ErgonError, ValueError):
    """Raised when a setting, a store URL or a command-line argument is invalid."""


class SerializationError(ErgonError, TypeError):
    """Raised when a value cannot be encoded: names the type and, where known, the flow and step."""

    def __init__(self, message: str, *, type_name: str | None = None,
                 flow_id: str | None = None, step: str | None = None) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.flow_id = flow_id
        self.step = step


class SchedulerError(ErgonError):
    """Raised when a flow cannot be scheduled (PyErgon's name)."""


class FlowArgumentsError(SerializationError, SchedulerError):
    """Raised when a flow's arguments cannot be stored, so the flow cannot be scheduled."""


class DecodeError(ErgonError, ValueError):
    """Raised when stored or received bytes cannot be decoded into a value."""


class StoreError(ErgonError):
    """Raised when the store cannot be opened or used (corrupt, foreign or newer schema)."""


class StoreUnavailableError(StoreError):
    """Raised when the store cannot be reached right now; the same request may be sent again."""


class InvalidCommandError(ErgonError, ValueError):
    """Raised in place of one command's result when a store cannot apply that command's own
    content (a field of the wrong type, a value out of range); the rest of its batch is applied."""

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(f"{command} refused by the store: {reason}")
        self.command = command
        self.reason = reason


class SchemaVersionError(StoreError):
    """Raised when a store was written by a newer schema version than this code knows."""

    def __init__(self, message: str, *, found: int, supported: int) -> None:
        super().__init__(message)
        self.found = found
        self.supported = supported


class FlowNotFoundError(ErgonError, LookupError):
    """Raised when no flow has the given flow_id."""

    def __init__(self, flow_id: str) -> None:
        super().__init__(f"no flow with flow_id {flow_id!r}")
        self.flow_id = flow_id


class ScheduleNotFoundError(ErgonError, LookupError):
    """Raised when no cron schedule has the given name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no schedule named {name!r}")
        self.name = name


class FencedError(ErgonError):
    """Raised when a write carries a lease epoch the store no longer accepts (the flow moved on)."""

    def __init__(self, flow_id: str, epoch: int, reason: str = "stale lease epoch") -> None:
        super().__init__(f"write for flow {flow_id!r} at epoch {epoch} refused: {reason}")
        self.flow_id = flow_id
        self.epoch = epoch
        self.reason = reason


class FlowBusyError(ErgonError):
    """Raised when a flow cannot be claimed because another worker holds a live lease on it."""

    def __init__(self, flow_id: str) -> None:
        super().__init__(f"flow {flow_id!r} is held by another worker")
        self.flow_id = flow_id


class UnknownFlowTypeError(ErgonError, LookupError):
    """Raised when a flow type name is not registered with the worker or the registry."""

    def __init__(self, flow_type: str, known: tuple[str, ...] = ()) -> None:
        hint = f"; served here: {', '.join(known)}" if known else "; none registered"
        super().__init__(f"flows of type {flow_type!r} are due but no worker serves that type{hint}")
        self.flow_type = flow_type
        self.known = known


class UnservedVersionError(ErgonError, LookupError):
    """Raised when flows are due of a code version that no worker here serves."""

    def __init__(self, versions: tuple[str, ...], served: str) -> None:
        names = ", ".join(versions)
        super().__init__(f"flows of version {names} are due but the workers here serve version {served}: run "
                         f"that version's code, or move them with `migrate --from {versions[0]} --to {served}`")
        self.versions = versions
        self.served = served


class FlowDefinitionError(ErgonError, TypeError):
    """Raised when a class used as a flow is not a valid flow (not a dataclass, no @flow, ...)."""


class ModuleImportError(ErgonError, ImportError):
    """Raised when a module named by the user cannot be imported: it is missing or it raised."""

    def __init__(self, module: str, cause: str) -> None:
        super().__init__(f"cannot import module {module!r}: {cause}")
        self.module = module
        self.cause = cause


class NondeterminismError(ErgonError):
    """Raised when replay calls a different step (or arguments) than the journal recorded.

    `patch` names the change: the journaled patch marker the code no longer calls (`missing`),
    or the change id to guard the new code with (`patched(patch)`).
    """

    def __init__(self, flow_id: str, position: int, recorded: str, called: str, patch: str | None = None,
                 missing: bool = False) -> None:
        if patch is None:
            advice = ""
        elif missing:
            advice = (f"; this flow took the new branch of patched({patch!r}) here: keep "
                      f"`await patched({patch!r})` or `deprecate_patch({patch!r})` at this point while such "
                      "flows run")
        else:
            advice = (f"; if the flow's code changed, put the new code under `if await patched({patch!r}):` "
                      "and keep the old code in its else branch, so flows started before the change replay it")
        super().__init__(
            f"flow {flow_id!r} diverged from its journal at step position {position}: "
            f"recorded {recorded}, called {called}{advice}")
        self.flow_id = flow_id
        self.position = position
        self.recorded = recorded
        self.called = called
        self.patch = patch
        self.missing = missing


class FlowFailedError(ErgonError):
    """Raised when awaiting the result of a flow that ended FAILED or CANCELLED."""

    def __init__(self, flow_id: str, status: str, error_type: str, message: str) -> None:
        super().__init__(f"flow {flow_id!r} ended {status}: {error_type}: {message}")
        self.flow_id = flow_id
        self.status = status
        self.error_type = error_type
        self.error_message = message


class StepError(ErgonError):
    """Raised on replay for a recorded step failure whose exception type cannot be rebuilt."""

    def __init__(self, error_type: str, message: str, retryable: bool | None = None) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.error_message = message
        self.retryable = retryable

    def is_retryable(self) -> bool:
        return bool(self.retryable)


class TimeoutExpired(ErgonError, TimeoutError):
    """Raised when waiting for a flow, a reply or a process took longer than its deadline."""


class ActorStoppedError(ErgonError):
    """Raised for a pending request when the actor (or client) it was sent to was closed by us."""


class BrokenActorError(ErgonError):
    """Raised when a child actor process died or failed its READY handshake."""

    def __init__(self, message: str, *, actor: str | None = None, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.actor = actor
        self.exit_code = exit_code


class BrokenStoreError(BrokenActorError, StoreError):
    """Raised when the supervisor gives up because its journal stopped on a broken (corrupt)
    store, which no restart can mend."""


class RestartIntensityError(ErgonError):
    """Raised when actors restarted more often than the restart intensity allows.

    `exits` holds (actor, exit code) of every restart in the window, oldest first.
    """

    def __init__(self, exits: tuple[tuple[str, int], ...], period: float) -> None:
        by_actor: dict[str, list[int]] = {}
        for actor, code in exits:
            by_actor.setdefault(actor, []).append(code)
        named = ", ".join(f"{actor} {len(codes)} {'time' if len(codes) == 1 else 'times'} "
                          f"(exit codes: {', '.join(str(c) for c in codes)})"
                          for actor, codes in sorted(by_actor.items()))
        super().__init__(f"actors restarted {len(exits)} times within {period:g}s: {named}; giving up")
        self.exits = exits
        self.period = period
        self.actors = tuple(sorted(by_actor))
        self.restarts = len(exits)


class ProtocolError(ErgonError, ValueError):
    """Raised when a message on the wire is malformed, of an unknown kind or another version."""


class MessageTooLargeError(ProtocolError):
    """Raised for a request or an answer larger than the max_message_size setting lets travel."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} of {size} bytes exceeds max_message_size ({limit} bytes)")
        self.what = what
        self.size = size
        self.limit = limit


class FlowStateError(ErgonError):
    """Raised when a flow's status does not allow an operation (retrying a flow that has not failed)."""

    def __init__(self, flow_id: str, status: str, operation: str) -> None:
        super().__init__(f"flow {flow_id!r} is {status}: cannot {operation} it")
        self.flow_id = flow_id
        self.status = status
        self.operation = operation


class FlowIdTakenError(ErgonError):
    """Raised when a flow id asked for is already the id of a flow of another class or with other
    arguments (or, for a fork, of any flow)."""

    def __init__(self, flow_id: str, reason: str) -> None:
        super().__init__(f"flow id {flow_id!r} is taken: {reason}")
        self.flow_id = flow_id
        self.reason = reason


class FlowCancelledError(ErgonError):
    """Raised for writes of a flow that was cancelled; the flow then ends CANCELLED."""

    def __init__(self, flow_id: str) -> None:
        super().__init__(f"flow {flow_id!r} was cancelled")
        self.flow_id = flow_id


class ChildFlowError(FlowFailedError):
    """Raised in a parent flow when the child flow it awaited failed or was cancelled.

    Retryable when the child's own error was, so the parent's retry policy decides as it would
    for that error. PyErgon's form: `ChildFlowError(type_name, message, retryable)`.
    """

    retryable = False  # class defaults: an instance rebuilt from the journal may lack them
    type_name = ""
    message = ""

    def __init__(self, type_name: str, message: str, retryable: bool = False, *, flow_id: str = "",
                 status: str = "FAILED") -> None:
        super().__init__(flow_id, status, type_name, message)
        if not flow_id:
            self.args = (f"{type_name}: {message}",)
        self.type_name = type_name
        self.message = message
        self.retryable = retryable

    def is_retryable(self) -> bool:
        return self.retryable


class StepTimeoutError(TimeoutExpired):
    """Raised when a step ran longer than its timeout; retryable."""

    def __init__(self, step: str, timeout: float) -> None:
        super().__init__(f"step {step!r} ran longer than {timeout:g}s")
        self.step = step
        self.timeout = timeout

    def is_retryable(self) -> bool:
        return True


class FlowTimeoutError(TimeoutExpired):
    """Raised when a flow ran (or waited) past its timeout; not retried."""

    def __init__(self, flow_id: str, timeout: float) -> None:
        super().__init__(f"flow {flow_id!r} did not finish within {timeout:g}s")
        self.flow_id = flow_id
        self.timeout = timeout

    def is_retryable(self) -> bool:
        return False


class PoisonFlowError(ErgonError):
    """Raised for (and recorded as the failure of) a flow quarantined because it crashed its
    worker `crashes` times while running alone; never retried."""

    def __init__(self, flow_id: str, step: str | None, position: int, crashes: int, details: str) -> None:
        where = f"step {position}" + (f" ({step})" if step else "")
        times = "once" if crashes == 1 else f"{crashes} times"
        super().__init__(f"flow {flow_id!r} quarantined as poison: it crashed its worker {times} "
                         f"running alone, last in {where}: {details}")
        self.flow_id = flow_id
        self.step = step
        self.position = position
        self.crashes = crashes

    def is_retryable(self) -> bool:
        return False


class SignalTimeoutError(TimeoutExpired):
    """Raised in a flow when the signal it awaited did not arrive within its timeout."""

    def __init__(self, signal: str, timeout: float) -> None:
        super().__init__(f"signal {signal!r} did not arrive within {timeout:g}s")
        self.signal = signal
        self.timeout = timeout


class TimerError(ErgonError, RuntimeError):
    """Raised when a durable timer is set outside a running flow (PyErgon's name)."""


class WorkerError(ErgonError):
    """Raised when a worker cannot run a flow it claimed (PyErgon's name)."""


class DagExecutionError(ErgonError, RuntimeError):
    """Raised when a DAG of steps cannot run (no steps, an unknown dependency, a cycle) or when
    one of its steps failed: then `node` names it, its error is the cause, and the DAG's error
    is retryable as the step's error was."""

    retryable = True  # a class default: an instance rebuilt from the journal may lack it

    def __init__(self, message: str, *, node: str | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.node = node
        self.retryable = retryable

    def is_retryable(self) -> bool:
        return self.retryable
