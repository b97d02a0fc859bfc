"""Control messages: each round-trips typed; any other shape is a ProtocolError, never a crash."""

import msgpack
import pytest

from ergon_actors.errors import ProtocolError
from ergon_actors.runtime.messages import (Buckets, Drain, Drained, Failed, Heartbeat, JournalStats, Ready, Stop,
                                           TypeCount, Wake, WorkerStats, decode, encode)
from ergon_actors.wire import PROTOCOL_VERSION, pack

pytestmark = pytest.mark.timeout(10)

MESSAGES = [
    Ready(123), Ready(123, ("OrderFlow", "Refund")), Failed("ImportError: no module named x"),
    Heartbeat(WorkerStats(1, 2, 3, 4, 5, 6)), Heartbeat(WorkerStats(), 2.5), Heartbeat(WorkerStats(), 1.0, True),
    Heartbeat(JournalStats(10, 40, 7, 1, 2, None, "")),
    Heartbeat(JournalStats(10, 40, 7, 1, 2, 1700000000.5, "connection refused")),
    Drain(2.5), Drain(0.0), Stop(), Drained(3), Wake(),
    Heartbeat(WorkerStats(1, 2, 3, 4, 5, 6, 0, 9, 7, 2, Buckets((1, 0, 8), 0.25), Buckets((0, 5), 9.5),
                          (TypeCount("OrderFlow", "COMPLETE", 5), TypeCount("Refund", "FAILED", 1)))),
    Heartbeat(JournalStats(10, 40, 7, 1, 2, None, "", Buckets((3, 7), 0.01), Buckets((10,), 40.0))),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_messages_round_trip_typed(message):
    decoded = decode(encode(message))
    assert decoded == message and type(decoded) is type(message)


def test_a_whole_number_is_a_valid_float_field():
    assert decode(pack("drain", [3])) == Drain(3.0)


def test_journal_figures_derive_their_ratios():
    stats = JournalStats(commits=4, commands=10)
    assert stats.commands_per_commit == 2.5 and stats.store_ok
    assert JournalStats().commands_per_commit == 0.0
    assert not JournalStats(store_failing_since=1.0).store_ok


@pytest.mark.parametrize("kind, body, says", [
    ("hello", [], "unknown control message 'hello'"),
    ("req", [], "unknown control message 'req'"),
    ("ready", None, "Ready takes a list of 2 fields"),
    ("ready", [1], "Ready takes a list of 2 fields"),
    ("ready", [1, [], 3], "Ready takes a list of 2 fields"),
    ("ready", ["1", []], "expected int"),
    ("ready", [True, []], "expected int"),
    ("ready", [1.0, []], "expected int"),
    ("ready", [1, "OrderFlow"], "expected a list"),
    ("ready", [1, [1, 2]], "expected str"),
    ("failed", [None], "expected str"),
    ("drain", ["soon"], "expected a number"),
    ("drain", [[1]], "expected a number"),
    ("stop", [1], "Stop takes a list of 0 fields"),
    ("drained", [{"cancelled": 1}], "expected int"),
    ("hb", [["worker", 1, 2], 0.0, False], "unexpected value"),
    ("hb", [["journal", 1, 2, 3, 4, 5, 6], 0.0, False], "unexpected value"),  # a journal tag, a worker's fields
    ("hb", [["manager", 1, 2, 3, 4, 5, 6], 0.0, False], "unexpected value"),
    ("hb", [["journal", 1, 2, 3, 4, 5, "yesterday", ""], 0.0, False], "unexpected value"),
    ("hb", [{"running": 1}, 0.0, False], "unexpected value"),
    ("hb", [[], 0.0, False], "unexpected value"),
    ("hb", [["journal", 1, 2, 3, 4, 5, None, "", ["buckets", [1, "2"], 0.5], ["buckets", [], 0]], 0.0, False],
     "unexpected value"),
    ("hb", [["journal", 1, 2, 3, 4, 5, None, "", [1, 2], ["buckets", [], 0]], 0.0, False], "unexpected value"),
    ("hb", [["worker", 1, 2, 3, 4, 5, 6, 0, 9, 7, 2, ["buckets", [], 0], ["buckets", [], 0],
             [["types", "OrderFlow", "COMPLETE", "5"]]], 0.0, False], "unexpected value"),
    ("hb", [["worker", 1, 2, 3, 4, 5, 6]], "Heartbeat takes a list of 3 fields"),
    ("hb", [["worker", 1, 2, 3, 4, 5, 6, 0, 9, 7, 2, ["buckets", [], 0], ["buckets", [], 0], []], "late", False],
     "expected a number"),
    ("hb", [["worker", 1, 2, 3, 4, 5, 6, 0, 9, 7, 2, ["buckets", [], 0], ["buckets", [], 0], []], 0.0, "idle"],
     "expected bool"),
])
def test_a_malformed_message_is_a_protocol_error(kind, body, says):
    with pytest.raises(ProtocolError, match=says):
        decode(pack(kind, body))


@pytest.mark.parametrize("frame", [
    b"", b"\xc1", b"\x93\x01", msgpack.packb([PROTOCOL_VERSION + 1, "stop", []]),
    msgpack.packb([PROTOCOL_VERSION, 7, []]), msgpack.packb({"kind": "stop"}),
])
def test_bytes_that_are_no_envelope_are_a_protocol_error(frame):
    with pytest.raises(ProtocolError):
        decode(frame)
