"""The wire format: every command, record and error round-trips; garbage is a ProtocolError."""

import msgpack
import pytest

from ergon_actors.core import Failure, FlowRecord, FlowStatus, StepRecord
from ergon_actors.errors import FencedError, FlowNotFoundError, ProtocolError
from ergon_actors.wire import (AppendStep, AwaitSignal, CancelFlow, Claim, ClaimFlows, CountFlows,
                               FinishFlow, GetFlow, InvokeChild, ListFlows, LoadSteps, ReleaseWorker,
                               RenewLeases, Scheduled, ScheduleFlow, SendSignal, SuspendFlow,
                               WaitingSignals, pack, unpack)

pytestmark = pytest.mark.timeout(10)

STEP = StepRecord(3, "charge", 12345, "FAILED", None, Failure("builtins:ValueError", "no", False, "tb"), 2,
                  1.5, tries=2, retry_at=9.0)
FLOW = FlowRecord("f", "Order", b"args", FlowStatus.RUNNING, "v1", 2, 7, "w", 1.0, 2.0, b"r",
                  Failure("x:Y", "m"), "p", 3.0, 4.0, "signal:go", True)
COMMANDS = [
    ScheduleFlow("f", "Order", b"a", "v1", 1.0, "p"), ClaimFlows("w", "r1", 10, 5.0, ("A", "B"), None, False),
    RenewLeases("w", 5.0, ("f", "g")), ReleaseWorker("w"), AppendStep("f", 7, STEP),
    FinishFlow("f", 7, FlowStatus.COMPLETE, b"r", None), SuspendFlow("f", 7, 9.0, 2, STEP.error),
    AwaitSignal("f", 7, STEP, "go", None), SendSignal("go", b"p"), InvokeChild("f", 7, STEP, ScheduleFlow("f/1", "C", b"")),
    CancelFlow("f"), WaitingSignals(10), GetFlow("f"), LoadSteps("f"), ListFlows("PENDING", 5), CountFlows(),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_commands_round_trip(command):
    kind, body = unpack(pack("req", [(1, command)]))
    (rid, back), = body
    assert (kind, rid) == ("req", 1)
    assert type(back) is type(command)
    for name in command.__dataclass_fields__:
        value, original = getattr(back, name), getattr(command, name)
        assert value == (list(original) if isinstance(original, tuple) else original)


def test_results_and_errors_round_trip():
    answers = [(1, [Claim(FLOW, (STEP,))]), (2, Scheduled("f", True)), (3, {"PENDING": 2, "due": 1}),
               (4, FencedError("f", 3, "flow is at epoch 4")), (5, FlowNotFoundError("g")), (6, None)]
    kind, body = unpack(pack("rep", answers))
    claims, scheduled, counts, fenced, missing, nothing = [result for _, result in body]
    assert claims == [Claim(FLOW, (STEP,))] and scheduled == Scheduled("f", True)
    assert counts == {"PENDING": 2, "due": 1} and nothing is None
    assert isinstance(fenced, FencedError) and (fenced.flow_id, fenced.epoch) == ("f", 3)
    assert str(fenced) == "write for flow 'f' at epoch 3 refused: flow is at epoch 4"
    assert isinstance(missing, FlowNotFoundError) and missing.flow_id == "g"


@pytest.mark.parametrize("frame", [
    b"", b"\xc1", b"not msgpack", msgpack.packb([2, "req", []]), msgpack.packb({"a": 1}),
    msgpack.packb([1, 2, 3]), msgpack.packb([1, "req"]), msgpack.packb(msgpack.ExtType(99, b"x")),
])
def test_garbage_is_a_protocol_error(frame):
    with pytest.raises(ProtocolError):
        unpack(frame)
