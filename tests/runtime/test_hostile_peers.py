"""Hostile peers: attacks on the journal's real socket while flows run on a real supervisor.

Every test sends one kind of attack from a raw ZeroMQ socket (no ergon_actors code on the
attacking side) and asserts that no actor died or restarted, every flow completed, the journal
stayed under 100 MB of RSS and the attack cost a few log lines, not one per message.
"""

import asyncio
import random
import threading
import time

import msgpack
import psutil
import pytest
import zmq

from ergon_actors.runtime import Supervisor
from tests.helpers import nested_ext, run, wait_until_async
from tests.runtime.conftest import FLOWS
from tests.runtime.flows import LedgerFlow, expected

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

ERROR_CODE = 63
EXT_CODES = range(ERROR_CODE, 85)  # the error ext, then every record, result and command
GET_FLOW, CLAIM_FLOWS, APPEND_STEP, FINISH_FLOW = 76, 70, 73, 74
RSS_LIMIT = 100 * 2**20
LOG_LINE_LIMIT = 300


def ext(code: int, *fields: object) -> msgpack.ExtType:
    return msgpack.ExtType(code, msgpack.packb(list(fields), use_bin_type=True))


def request(*pairs: tuple[int, object]) -> bytes:
    return msgpack.packb([1, "req", [list(pair) for pair in pairs]], use_bin_type=True)


class Peer:
    """A DEALER socket of the attacker's own on the journal's address."""

    def __init__(self, address: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 200_000)
        self.sock.connect(address)

    def ask(self, *pairs: tuple[int, object], timeout: float = 20.0) -> dict:
        """Send a request of `pairs` (again every 2 s) until it is answered; the answers by request
        id, ext types raw. The first request id must be unique: answers to others are skipped."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.send(request(*pairs))
            while self.sock.poll(2000):
                reply = msgpack.unpackb(self.sock.recv(), strict_map_key=False)
                assert reply[:2] == [1, "rep"], reply
                answers = dict(reply[2])
                if pairs[0][0] in answers:
                    return answers
        raise AssertionError(f"no answer from the journal within {timeout}s")

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


class Watch:
    """The journal's highest RSS, sampled every 5 ms from a thread while the attack runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.highest = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.wait(0.005):
            try:
                self.highest = max(self.highest, self.process.memory_info().rss)
            except psutil.NoSuchProcess:
                return

    def stop(self) -> int:
        self.done.set()
        self.thread.join(5)
        return self.highest


def under_attack(tmp_path, capfd, caplog, attack, *, malformed: int = 0) -> dict:
    """Run flows on a supervisor, call `attack(peer, flow_id)` in a thread meanwhile, then check
    that the runtime shrugged it off. `malformed`: drops the journal must have counted.
    Returns the journal's counters."""
    ledger = str(tmp_path / "ledger")

    async def body() -> dict:
        async with Supervisor(FLOWS, store=f"sqlite:///{tmp_path}/journal.db", workers=2) as sup:
            pids = sup.pids()
            watch = Watch(pids["journal"])
            ids = [await sup.schedule(LedgerFlow(f"a{i}", ledger, "sleep:0.05"), f"a{i}") for i in range(20)]
            peer = Peer(sup.journal_address)
            try:
                await asyncio.to_thread(attack, peer, ids[0])
                ids += [await sup.schedule(LedgerFlow(f"b{i}", ledger), f"b{i}") for i in range(20)]
                for flow_id in ids:
                    assert await sup.result(flow_id, timeout=60) == expected(flow_id)
                # the journal answers this request after every frame the attack sent
                assert peer.ask((999, ext(GET_FLOW, ids[-1])))[999].code == 65
            finally:
                peer.close()
                highest = watch.stop()
            assert sup.pids() == pids
            assert sup.snapshot().restarts == 0
            assert highest < RSS_LIMIT, f"journal RSS reached {highest / 2**20:.0f} MB"
            await wait_until_async(lambda: _counted(sup, malformed), timeout=10,
                                   what=f"{malformed} malformed messages counted")
            return sup.snapshot().journal

    journal = run(body(), 100)
    lines = [line for line in capfd.readouterr().err.splitlines() if "ergon_actors" in line]
    lines += [r.getMessage() for r in caplog.records if r.name.startswith("ergon_actors")]
    assert len(lines) < LOG_LINE_LIMIT, f"{len(lines)} log lines, e.g. {lines[:3]}"
    return journal


async def _counted(sup: Supervisor, n: int) -> bool:
    return sup.snapshot().journal.malformed >= n


def test_nested_ext_payloads_of_every_code(tmp_path, capfd, caplog):
    frames = [request((1, msgpack.ExtType(code, nested_ext(code, depth))))
              for code in EXT_CODES for depth in (200, 1000)]
    frames += [nested_ext(code, 200) for code in EXT_CODES]  # also as the whole frame

    def attack(peer: Peer, flow_id: str) -> None:
        for frame in frames:
            peer.sock.send(frame)

    under_attack(tmp_path, capfd, caplog, attack, malformed=len(frames))


def test_frames_of_50_mb(tmp_path, capfd, caplog):
    items = 50_000_000
    huge = b"\xdd" + items.to_bytes(4, "big") + b"\x90" * items  # an array of 50 M empty arrays
    in_envelope = b"\x93\x01\xa3req" + huge  # [1, "req", <huge>]

    def attack(peer: Peer, flow_id: str) -> None:
        for i, frame in enumerate((huge, in_envelope, huge)):
            peer.sock.send(frame, copy=False)
            # answered only once the journal has received (or refused) the frame before it
            assert peer.ask((i, ext(GET_FLOW, flow_id)))[i].code == 65

    under_attack(tmp_path, capfd, caplog, attack)


def test_headers_claiming_4g_items(tmp_path, capfd, caplog):
    claims = [b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
              b"\xc6\xff\xff\xff\xff", b"\xc9\xff\xff\xff\xff\x40"]  # array, map, str, bin, ext
    frames = []
    for claim in claims:
        frames += [claim + b"\x90" * 64, b"\x93\x01\xa3req" + claim + b"\x00" * 64,
                   b"\x93\x01\xa3req\x91\x92\x01" + claim + b"\x00" * 64]  # as the whole, body, command

    def attack(peer: Peer, flow_id: str) -> None:
        for frame in frames:
            peer.sock.send(frame)

    under_attack(tmp_path, capfd, caplog, attack, malformed=len(frames))


def test_commands_with_wrong_field_types_get_one_error_each(tmp_path, capfd, caplog):
    step = [0, "work", 1, "COMPLETE", None, None, 1, 0.0, 1, None]
    bad = [
        ext(GET_FLOW, [1, 2]),
        ext(GET_FLOW),                                            # too few fields
        ext(GET_FLOW, "x", "y", "z"),                             # too many fields
        ext(CLAIM_FLOWS, "w", "r", "ten", 5.0, None, None, False),
        ext(CLAIM_FLOWS, "w", "r", 10, 5.0, [1, 2], None, False),  # flow types not strings
        ext(APPEND_STEP, "f", 1, "not a step"),
        ext(APPEND_STEP, "f", 1, ext(66, "zero", *step[1:])),     # a step with a str position
        ext(APPEND_STEP, "f", 1, ext(GET_FLOW, "f")),             # a command where a step goes
        ext(FINISH_FLOW, "f", 1, "FAILED", None, ext(64, 1, 2, 3, 4, 5)),  # a malformed Failure
        ext(69, "f", "Order", "args as str, not bytes", None, None, None),
        ext(78, 5, "all"),
        ext(ERROR_CODE, ["not", "a", "name"], 1, 2),
    ]

    def attack(peer: Peer, flow_id: str) -> None:
        pairs = [(i, command) for i, command in enumerate(bad, start=10)]
        answers = peer.ask((1, ext(GET_FLOW, flow_id)), *pairs, (2, ext(79, 1)))
        assert isinstance(answers[1], msgpack.ExtType) and answers[1].code == 65  # the flow's record
        assert isinstance(answers[2], dict)  # the counts
        for i, command in pairs:
            answer = answers[i]
            assert isinstance(answer, msgpack.ExtType) and answer.code == ERROR_CODE, (command, answer)
            assert msgpack.unpackb(answer.data)[0] == "ProtocolError", (command, answer)

    journal = under_attack(tmp_path, capfd, caplog, attack, malformed=len(bad))
    assert journal.malformed >= len(bad)


def test_a_flood_of_100k_garbage_messages(tmp_path, capfd, caplog):
    rng = random.Random(9)
    frames = [bytes([rng.randrange(256)]) for _ in range(50_000)]
    frames += [rng.randbytes(rng.randrange(2, 64)) for _ in range(50_000)]

    def attack(peer: Peer, flow_id: str) -> None:
        for frame in frames:
            peer.sock.send(frame)

    # Some random frames decode (a one-byte integer is valid msgpack), none is a valid envelope.
    under_attack(tmp_path, capfd, caplog, attack, malformed=len(frames))
