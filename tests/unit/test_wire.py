"""The wire format: every command, record and error round-trips; anything malformed is a
ProtocolError, never another exception and never a crash."""

import contextlib
import random
import subprocess
import sys
from dataclasses import dataclass

import msgpack
import pytest

from ergon_actors.core import Crash, Failure, FlowRecord, FlowStatus, StepRecord
from ergon_actors.errors import ErgonError, FencedError, FlowNotFoundError, ProtocolError
from ergon_actors.core.queues import QueueLimits
from ergon_actors.storage.commands import (EXT_TYPES, AppendStep, AwaitSignal, CancelFlow, Claim,
                                           ClaimFlows, CountFlows, DeclareQueue, FinishFlow, GetFlow, InvokeChild,
                                           ListFlows, LoadSteps, MigrateFlows, PutRecord, RecordCrash, ReleaseWorker,
                                           QueueStats, RenewLeases, ResetStore, ScanRecords, Scheduled,
                                           ScheduleFlow,
                                           SendSignal, SuspendFlow, WaitingSignals, pack, pack_within, unpack)
from ergon_actors.wire import ERROR_CODE, MAX_ARRAY_LEN, MAX_EXT_DEPTH, Codec
from ergon_actors.wire import unpack as unpack_control
from tests.helpers import nested_ext

pytestmark = pytest.mark.timeout(30)

STEP = StepRecord(3, "charge", 12345, "FAILED", None, Failure("builtins:ValueError", "no", False, "tb"), 2,
                  1.5, tries=2, retry_at=9.0)
FLOW = FlowRecord("f", "Order", b"args", FlowStatus.RUNNING, "v1", 2, 7, "w", 1.0, 2.0, b"r",
                  Failure("x:Y", "m"), "p", 3.0, 4.0, "signal:go", True,
                  (Crash(5.0, "w0", "signal", None, 11, 2, "charge", False),
                   Crash(6, "w1", "exit", 1, None, 0, None, True)),
                  2)
COMMANDS = [
    ScheduleFlow("f", "Order", b"a", "v1", 1.0, "p"),
    ScheduleFlow("f", "Order", b"a", None, None, None, "q", -2, "k", "d"),
    DeclareQueue(QueueLimits("q", 3, None, 1, 10, 0.5), False), QueueStats(5),
    ClaimFlows("w", "r1", 10, 5.0, ("A", "B"), None, False),
    RenewLeases("w", 5.0, ("f", "g")), ReleaseWorker("w"), AppendStep("f", 7, STEP),
    FinishFlow("f", 7, FlowStatus.COMPLETE, b"r", None), SuspendFlow("f", 7, 9.0, 2, STEP.error),
    AwaitSignal("f", 7, STEP, "go", None), SendSignal("go", b"p"),
    InvokeChild("f", 7, STEP, ScheduleFlow("f/1", "C", b"")),
    CancelFlow("f"), WaitingSignals(10), GetFlow("f"), LoadSteps("f"), ListFlows("PENDING", 5), CountFlows(),
    RecordCrash("w", None, 9, "hang", 3), ClaimFlows("w", "r2", 1, 5.0, None, None, False, True),
    PutRecord("inv/f", b"v", True, None), ScanRecords("inv/"), ResetStore(),
    ClaimFlows("w", "r3", 4, 5.0, ("A",), None, False, False, "v2"), MigrateFlows("v2", "v1", ("f", "g")),
    MigrateFlows(None, None, ("f",)),
]
# The ext code of every class is the wire format: pinned here so a renumbering fails a test.
CODES = {"Failure": 64, "FlowRecord": 65, "StepRecord": 66, "Scheduled": 67, "Claim": 68, "ScheduleFlow": 69,
         "ClaimFlows": 70, "RenewLeases": 71, "ReleaseWorker": 72, "AppendStep": 73, "FinishFlow": 74,
         "SuspendFlow": 75, "GetFlow": 76, "LoadSteps": 77, "ListFlows": 78, "CountFlows": 79,
         "AwaitSignal": 80, "SendSignal": 81, "InvokeChild": 82, "CancelFlow": 83, "WaitingSignals": 84,
         "Crash": 85, "RecordCrash": 86, "PutRecord": 87, "ScanRecords": 88, "ResetStore": 89, "FlowEvent": 90,
         "LoadHistory": 91, "QueryFlows": 92, "FlowPage": 93, "RetryFlow": 94, "ForkFlow": 95,
         "NextDue": 62, "MigrateFlows": 112, "QueueLimits": 116, "QueueState": 117, "DeclareQueue": 118,
         "QueueStats": 119, "CronSchedule": 122, "PutSchedule": 123, "ListSchedules": 124, "ChangeSchedule": 125,
         "FireSchedule": 126, "PruneFlows": 127}


def ext(cls: type, *fields: object) -> msgpack.ExtType:
    return msgpack.ExtType(CODES[cls.__name__], msgpack.packb(list(fields), use_bin_type=True))


STEP_EXT = ext(StepRecord, 1, "s", 1)


def request(*commands: object) -> bytes:
    return msgpack.packb([1, "req", [[i, c] for i, c in enumerate(commands)]], use_bin_type=True)


def answers(frame: bytes) -> list:
    kind, body = unpack(frame)
    assert kind == "req"
    return [command for _, command in body]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_commands_round_trip(command):
    kind, body = unpack(pack("req", [(1, command)]))
    assert (kind, body) == ("req", [[1, command]])


def test_ext_codes_are_pinned():
    assert {cls.__name__: code for code, cls in EXT_TYPES} == CODES
    assert ERROR_CODE == 63


def test_results_and_errors_round_trip():
    answers = [(1, [Claim(FLOW, (STEP,))]), (2, Scheduled("f", True)), (3, {"PENDING": 2, "due": 1}),
               (4, FencedError("f", 3, "flow is at epoch 4")), (5, FlowNotFoundError("g")), (6, None)]
    kind, body = unpack(pack("rep", answers))
    assert kind == "rep"
    claims, scheduled, counts, fenced, missing, nothing = [result for _, result in body]
    assert claims == [Claim(FLOW, (STEP,))] and scheduled == Scheduled("f", True)
    assert counts == {"PENDING": 2, "due": 1} and nothing is None
    assert isinstance(fenced, FencedError) and (fenced.flow_id, fenced.epoch) == ("f", 3)
    assert str(fenced) == "write for flow 'f' at epoch 3 refused: flow is at epoch 4"
    assert isinstance(missing, FlowNotFoundError) and missing.flow_id == "g"


@pytest.mark.parametrize("frame", [
    b"", b"\xc1", b"not msgpack", msgpack.packb([2, "req", []]), msgpack.packb({"a": 1}),
    msgpack.packb([1, 2, 3]), msgpack.packb([1, "req"]), msgpack.packb(msgpack.ExtType(99, b"x")),
    msgpack.packb([1, "req", [[1, msgpack.ExtType(76, b"\xc1")]]]),  # an undecodable payload
    msgpack.packb([[[]]] * 3),
    b"\x91" * 5000 + b"\x90",  # nested deeper than msgpack's own stack
    msgpack.packb([1, "req", []]) + b"\x00",  # extra bytes after the message
    b"\x81\x91\x90\x01",  # a map keyed by a list (unhashable)
])
def test_garbage_is_a_protocol_error(frame):
    with pytest.raises(ProtocolError):
        unpack(frame)


@pytest.mark.parametrize("header", [b"\xdd", b"\xdf", b"\xdb", b"\xc6", b"\xc9"],
                         ids=["array", "map", "str", "bin", "ext"])
def test_a_header_claiming_4g_items_is_refused_before_anything_is_allocated(header):
    frame = b"\x93\x01\xa3req" + header + b"\xff\xff\xff\xff" + b"\x40" + b"\x90" * 32
    with pytest.raises(ProtocolError, match=r"exceeds max|incomplete input"):
        unpack(frame)


def test_an_array_longer_than_the_limit_is_refused_before_it_is_built():
    items = MAX_ARRAY_LEN + 1
    with pytest.raises(ProtocolError, match=f"{items} exceeds max_array_len"):
        unpack(b"\xdd" + items.to_bytes(4, "big") + b"\x90" * items)


@pytest.mark.parametrize("code", [ERROR_CODE, *CODES.values()])
def test_nested_ext_payloads_stop_at_the_depth_limit(code):
    for depth in (MAX_EXT_DEPTH + 1, 200, 1000):
        with pytest.raises(ProtocolError, match="nested deeper"):
            unpack(request(msgpack.ExtType(code, nested_ext(code, depth))))


def test_nested_ext_payloads_do_not_crash_a_fresh_process():
    """Before the depth limit, 200 nested payloads overflowed the C stack (exit -11)."""
    script = ("import msgpack\nfrom ergon_actors.storage.commands import unpack\n"
              "data = msgpack.packb(0)\nfor _ in range(5000): data = msgpack.packb(msgpack.ExtType(64, data))\n"
              "try:\n    unpack(data)\nexcept Exception as exc:\n    print(type(exc).__name__)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20, check=False)
    assert (out.returncode, out.stdout.strip()) == (0, "ProtocolError"), out.stderr


def test_the_deepest_legitimate_nesting_decodes():
    claim = Claim(FLOW, (STEP,))  # Claim > FlowRecord > Failure: three levels
    assert unpack(pack("rep", [(1, [claim])]))[1] == [[1, [claim]]]


@pytest.mark.parametrize("bad, reason", [
    (ext(GetFlow, [1, 2]), "GetFlow.flow_id: str expected, got list"),
    (ext(GetFlow), "GetFlow: 1 fields expected, got list of 0"),
    (ext(GetFlow, "a", "b"), "GetFlow: 1 fields expected, got list of 2"),
    (ext(ClaimFlows, "w", "r", "ten", 5.0), "ClaimFlows.limit: int expected, got str"),
    (ext(ClaimFlows, "w", "r", True, 5.0), "ClaimFlows.limit: int expected, got bool"),
    (ext(ClaimFlows, "w", "r", 1, 5.0, ["a", 2]), "ClaimFlows.flow_types item: str expected, got int"),
    (ext(ClaimFlows, "w", "r", 1, 5.0, "ab"), "ClaimFlows.flow_types: None or list or tuple expected"),
    (ext(AppendStep, "f", 1, "step"), "AppendStep.step: StepRecord expected, got str"),
    (ext(AppendStep, "f", 1, ext(GetFlow, "f")), "AppendStep.step: StepRecord expected, got GetFlow"),
    (ext(AppendStep, "f", 1, ext(StepRecord, "zero", "s", 1)),
     "AppendStep.step: StepRecord expected: malformed StepRecord.position: int expected, got str"),
    (ext(FinishFlow, "f", 1, "FAILED", None, ext(Failure, 1, "m")), "Failure.type: str expected, got int"),
    (ext(ScheduleFlow, "f", "T", "args"), "ScheduleFlow.args: bytes expected, got str"),
    (ext(InvokeChild, "f", 1, STEP_EXT, ext(GetFlow, "c")),
     "InvokeChild.child: ScheduleFlow expected, got GetFlow"),
    (ext(ListFlows, 5, "all"), "ListFlows.status: None or str expected, got int"),
    (ext(RecordCrash, "w", None, "9", "signal", 3), "RecordCrash.signal: None or int expected, got str"),
    (ext(ClaimFlows, "w", "r", 1, 5.0, None, None, False, "yes"), "ClaimFlows.solo: bool expected, got str"),
    (ext(SuspendFlow, "f", 1, "soon"), "SuspendFlow.ready_at: None or float or int expected, got str"),
    (msgpack.ExtType(ERROR_CODE, msgpack.packb([["x"], 1, 2])), "malformed error"),
    (msgpack.ExtType(ERROR_CODE, msgpack.packb(["FencedError", "m", {"flow_id": [1]}])), "malformed error"),
])
def test_a_record_with_wrong_fields_fails_alone(bad, reason):
    good = ext(GetFlow, "f")
    first, wrong, last = answers(request(good, bad, good))
    assert first == last == GetFlow("f")
    assert type(wrong) is ProtocolError and reason in str(wrong)


def test_a_flow_record_with_a_malformed_crash_fails_alone():
    fields = [getattr(FLOW, name) for name in FLOW.__slots__]
    fields[11] = ext(Failure, "x:Y", "m")
    fields[17] = [ext(Crash, 1.0, "w", "exit", 1, None, "two", None, True)]
    first, wrong, last = answers(request(ext(GetFlow, "f"), ext(FlowRecord, *fields), ext(GetFlow, "f")))
    assert first == last == GetFlow("f")
    assert type(wrong) is ProtocolError and "Crash.position: int expected, got str" in str(wrong)


def test_ints_pass_for_floats_and_lists_become_tuples():
    command, = answers(request(ext(ClaimFlows, "w", "r", 1, 5, ["A"], None, False)))
    assert command == ClaimFlows("w", "r", 1, 5, ("A",), None, False)
    assert type(command.flow_types) is tuple
    step, = answers(request(STEP_EXT))
    assert step == StepRecord(1, "s", 1)


def test_an_error_of_unknown_class_decodes_as_the_root_error():
    frame = msgpack.packb([1, "rep", [[1, msgpack.ExtType(ERROR_CODE, msgpack.packb(["os", "m", {}]))]]])
    (_, error), = unpack(frame)[1]
    assert type(error) is ErgonError and str(error) == "m"


def test_control_messages_carry_no_records():
    with pytest.raises(ProtocolError, match="unknown ext type 76"):
        unpack_control(pack("req", [(1, GetFlow("f"))]))


def test_a_codec_refuses_fields_that_cannot_travel():
    @dataclass(frozen=True)
    class Odd:
        values: dict[str, int]

    with pytest.raises(TypeError, match=r"Odd\.values"):
        Codec([(10, Odd)])
    with pytest.raises(ValueError, match="reserved or taken"):
        Codec([(ERROR_CODE, Scheduled)])


def test_random_and_mutated_frames_only_ever_raise_protocol_error():
    rng = random.Random(20240611)
    seeds = [pack("req", [(i, c) for i, c in enumerate(COMMANDS)]), pack("rep", [(1, [Claim(FLOW, (STEP,))])]),
             pack("rep", [(1, FencedError("f", 3))])]
    for i in range(20_000):
        if i % 4 == 0:
            frame = rng.randbytes(rng.randrange(64))
        else:
            frame = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 8)):
                at = rng.randrange(len(frame))
                choice = rng.randrange(3)
                if choice == 0:
                    frame[at] = rng.randrange(256)
                elif choice == 1:
                    del frame[at:at + rng.randrange(1, 16)]
                else:
                    frame[at:at] = rng.randbytes(rng.randrange(1, 8))
            frame = bytes(frame)
        with contextlib.suppress(ProtocolError):
            unpack(frame)


def test_pack_within_splits_a_batch_and_names_what_cannot_travel():
    items = [(i, ScheduleFlow(f"f{i}", "T", b"x" * (i * 100))) for i in range(40)]
    frames, too_large = pack_within("req", items, 2000)
    assert len(frames) > 1 and all(len(frame) <= 2000 for frame in frames)
    carried = [tuple(item) for frame in frames for item in unpack(frame)[1]]
    assert [rid for (rid, _), _ in too_large] == list(range(20, 40))
    assert carried == items[:20]
    assert all(size > 2000 for _, size in too_large)
    assert pack_within("req", items[:3], 2000) == ([pack("req", items[:3])], [])


def test_an_int_beyond_64_signed_bits_fails_its_record():
    # msgpack carries up to 2**64 - 1; the stores keep signed 64-bit integers
    _first, wrong, last = answers(request(ext(GetFlow, "f"), ext(ClaimFlows, "w", "r", 2**64 - 1, 5.0),
                                         ext(ClaimFlows, "w", "r", 2**63 - 1, 5.0)))
    assert type(wrong) is ProtocolError and "ClaimFlows.limit: 18446744073709551615 is outside" in str(wrong)
    assert last == ClaimFlows("w", "r", 2**63 - 1, 5.0)


def test_records_are_checked_after_others_of_known_field_types_passed():
    good = ext(StepRecord, 1, "s", 1, "COMPLETE", b"r", None, 1, 1.5)
    first, second, wrong, last = answers(request(good, good, ext(StepRecord, 1, "s", "x"), good))
    assert first == second == last == StepRecord(1, "s", 1, "COMPLETE", b"r", None, 1, 1.5)
    assert type(wrong) is ProtocolError and "StepRecord.args_hash: int expected, got str" in str(wrong)


def test_schedule_and_retention_commands_and_their_results_round_trip():
    from ergon_actors.storage.commands import (ChangeSchedule, CronSchedule, FireSchedule, ListSchedules,
                                               PruneFlows, PutSchedule)

    commands = [PutSchedule("s", "* * * * *", "T", b"a", "all"), ListSchedules(), ChangeSchedule("s", "pause"),
                FireSchedule("s", 2, (60.0, 120.0), ("s@1", "s@2"), 120.0), PruneFlows(9.5, ("FAILED",), 10)]
    _, body = unpack(pack("req", list(enumerate(commands))))
    assert [c for _, c in body] == commands
    answers = [(1, [CronSchedule("s", "* * * * *", "T", b"a", "once", True, 1.5, 3, 0.5)]), (2, ["s@1"]), (3, 4)]
    assert unpack(pack("rep", answers))[1] == [list(a) for a in answers]


def test_operators_commands_and_their_results_round_trip():
    from ergon_actors.storage.commands import FlowPage, ForkFlow, LoadHistory, QueryFlows, RetryFlow
    from ergon_actors.storage.events import FlowEvent

    commands = [QueryFlows(("FAILED",), ("Order",), 1.5, 2.5, "a", "ValueError", False, 10, "1.0:3"),
                RetryFlow("f"), ForkFlow("f", "g", 3), LoadHistory("f", 4, 5)]
    _, body = unpack(pack("req", list(enumerate(commands))))
    assert [c for _, c in body] == commands
    answers = [(1, FlowPage((FLOW,), "9")), (2, [FlowEvent(1, 2.5, "claimed", '{"worker":"w"}')])]
    assert unpack(pack("rep", answers))[1] == [list(a) for a in answers]
