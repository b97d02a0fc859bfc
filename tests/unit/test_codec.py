"""The msgpack codec: round trips keep type and value, unknown types never decode or import."""

from __future__ import annotations

import collections
import dataclasses
import enum
import importlib
import math
import os
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timedelta, timezone, tzinfo, UTC
from decimal import Decimal
from pathlib import Path

import msgpack
import pytest

import ergon_actors.codec as codec
from ergon_actors.codec import args_hash, decode, encode, register_module, register_type
from ergon_actors.errors import DecodeError, SerializationError

pytestmark = pytest.mark.timeout(30)

register_module(__name__)  # the module-level classes below decode through the trusted-module path


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"
    SLOW = "slow"


class Perm(enum.Flag):
    R = 1
    W = 2
    X = 4


class Planet(enum.Enum):
    EARTH = (5.97e24, 6.37e6)


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenSlots:
    name: str
    when: datetime
    tags: frozenset


@dataclasses.dataclass
class Order:
    items: list
    index: dict
    origin: Point
    total: Decimal = Decimal("0")
    raw: bytearray = dataclasses.field(default_factory=bytearray)


@dataclasses.dataclass
class Derived:
    base: int
    double: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.double = self.base * 2


class Outer:
    @dataclasses.dataclass(frozen=True)
    class Inner:
        value: tuple


class IntSub(int):
    pass


class StrSub(str):
    pass


class CustomTz(tzinfo):
    def utcoffset(self, dt: object) -> timedelta:
        return timedelta(hours=1)


def _berlin() -> object:
    try:
        from zoneinfo import ZoneInfo
        return ZoneInfo("Europe/Berlin")
    except Exception:  # no tz database here
        return None


BERLIN = _berlin()
needs_tzdata = pytest.mark.skipif(BERLIN is None, reason="zoneinfo has no Europe/Berlin (no tz database)")


def same(a: object, b: object) -> bool:
    """Deep equality that also demands identical types, NaN-aware, tz-name-aware."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)  # nan, inf and -0.0 included
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(same(ka, kb) and same(va, vb)
                                        for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True))
    if isinstance(a, (set, frozenset)):
        return a == b and sorted(map(repr, a)) == sorted(map(repr, b))
    if isinstance(a, (datetime, date, time, timedelta)):
        return a == b and repr(a) == repr(b)  # repr shows tzinfo (key/name) and fold
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return a == b


CASES = [
    pytest.param(None, id="none"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param(0, id="zero"),
    pytest.param(-1, id="neg"),
    pytest.param(2**63 - 1, id="i64max"),
    pytest.param(-2**63, id="i64min"),
    pytest.param(2**64 - 1, id="u64max"),
    pytest.param(2**64, id="u64max+1"),
    pytest.param(-2**63 - 1, id="i64min-1"),
    pytest.param(10**40, id="bigpos"),
    pytest.param(-(10**40) - 7, id="bigneg"),
    pytest.param(1.5, id="float"),
    pytest.param(-0.0, id="negzero"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="-inf"),
    pytest.param(math.nan, id="nan"),
    pytest.param("", id="emptystr"),
    pytest.param("héllo ✓", id="str"),
    pytest.param(b"", id="emptybytes"),
    pytest.param(b"\x00\xff", id="bytes"),
    pytest.param(bytearray(b"ab"), id="bytearray"),
    pytest.param(bytearray(), id="emptybytearray"),
    pytest.param([], id="emptylist"),
    pytest.param([1, [2, [3, "x"]]], id="nestedlist"),
    pytest.param({}, id="emptydict"),
    pytest.param({"a": 1, "b": [None]}, id="dict"),
    pytest.param({1: "x", (1, 2): "t", None: 0, False: 1, frozenset({1}): 2, 1.5: 3}, id="dictkeys"),
    pytest.param((), id="emptytuple"),
    pytest.param((1,), id="tuple1"),
    pytest.param(((1, 2), [3, (4,)], {"k": (5,)}), id="nestedtuple"),
    pytest.param(set(), id="emptyset"),
    pytest.param({1, 2, 3}, id="set"),
    pytest.param({(1, "a"), (2, "b")}, id="setoftuples"),
    pytest.param(frozenset(), id="emptyfrozenset"),
    pytest.param(frozenset({"x", "y"}), id="frozenset"),
    pytest.param({frozenset({1}), frozenset()}, id="setoffrozensets"),
    pytest.param([{"a": [bytearray(b"x")]}, (bytearray(b"y"),)], id="nestedbytearray"),
    pytest.param(datetime(2024, 2, 29, 13, 14, 15, 123456), id="naivedatetime"),
    pytest.param(datetime(2024, 1, 1, tzinfo=UTC), id="utcdatetime"),
    pytest.param(datetime(2024, 1, 1, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30))), id="offsetdatetime"),
    pytest.param(datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=2), "EET")), id="nameddatetime"),
    pytest.param(datetime(2024, 1, 1, tzinfo=timezone(timedelta(seconds=1, microseconds=7))), id="usoffset"),
    pytest.param(datetime(2024, 1, 1, 1, 30, fold=1), id="fold"),
    pytest.param(datetime(2024, 7, 1, 12, tzinfo=BERLIN), id="zoneinfo", marks=needs_tzdata),
    pytest.param(datetime(2023, 10, 29, 2, 30, fold=1, tzinfo=BERLIN), id="zoneinfofold", marks=needs_tzdata),
    pytest.param(date(1, 1, 1), id="datemin"),
    pytest.param(date(2024, 5, 17), id="date"),
    pytest.param(time(23, 59, 59, 999999), id="time"),
    pytest.param(time(8, 0, tzinfo=UTC), id="tztime"),
    pytest.param(timedelta(days=-1, seconds=5, microseconds=7), id="timedelta"),
    pytest.param(timedelta(0), id="zerotimedelta"),
    pytest.param(uuid.UUID("12345678-1234-5678-1234-567812345678"), id="uuid"),
    pytest.param(Decimal("1.10"), id="decimal"),
    pytest.param(Decimal("-0"), id="decimalnegzero"),
    pytest.param(Decimal("1E+30"), id="decimalexp"),
    pytest.param(Decimal("NaN"), id="decimalnan"),
    pytest.param(Decimal("sNaN"), id="decimalsnan"),
    pytest.param(Decimal("-Infinity"), id="decimalinf"),
    pytest.param(Color.RED, id="enum"),
    pytest.param(Level.HIGH, id="intenum"),
    pytest.param(Mode.FAST, id="strenum"),
    pytest.param(Perm.R | Perm.W, id="flagcombo"),
    pytest.param(Perm(0), id="flagzero"),
    pytest.param(Planet.EARTH, id="tuplevaluedenum"),
    pytest.param({Level.LOW: Mode.SLOW, Color.GREEN: [Perm.X]}, id="enumkeys"),
    pytest.param(Point(1, -2), id="dataclass"),
    pytest.param(FrozenSlots("n", datetime(2020, 1, 1, tzinfo=UTC), frozenset({1})), id="frozenslots"),
    pytest.param(Order([Color.RED, Color.GREEN], {(1, 2): "a", (3, 4): "b"}, Point(0, 0), Decimal("9.99"),
                       bytearray(b"zz")), id="nesteddataclass"),
    pytest.param(Derived(21), id="initfalse"),
    pytest.param(Outer.Inner((1, (2,))), id="nestedclass"),
    pytest.param([Point(1, 2), (Point(3, 4), {Point(5, 6).x: Outer.Inner(())})], id="dataclassesincontainers"),
]


@pytest.mark.parametrize("value", CASES)
def test_round_trip_keeps_type_and_value(value: object) -> None:
    data = encode(value)
    assert isinstance(data, bytes)
    result = decode(data)
    assert type(result) is type(value)
    assert same(result, value), (result, value)


@pytest.mark.parametrize("value", CASES)
def test_round_trip_nested_in_every_container(value: object) -> None:
    hashable = True
    try:
        hash(value)
    except TypeError:
        hashable = False
    wrapped = [value, (value,), {"k": value}, Order([value], {}, Point(1, 1))]
    if hashable:
        wrapped += [{value: 1}, frozenset({(value, 1)}) if not _is_nan(value) else ()]
    result = decode(encode(wrapped))
    assert same(result, wrapped)


def _is_nan(value: object) -> bool:
    return (isinstance(value, float) and math.isnan(value)) or (isinstance(value, Decimal) and value.is_nan())


def test_builtin_identities_survive() -> None:
    result = decode(encode(([1], {"l": [2]}, (3,), True, 1, Level.LOW)))
    assert type(result) is tuple
    assert type(result[0]) is list and type(result[1]["l"]) is list and type(result[2]) is tuple
    assert result[3] is True and type(result[4]) is int and result[5] is Level.LOW


def test_plain_builtins_are_plain_msgpack() -> None:
    value = {"a": [1, 2.5, "x", b"y", None, True]}
    assert encode(value) == msgpack.packb(value, use_bin_type=True)
    assert decode(msgpack.packb(value, use_bin_type=True)) == value


def test_set_encoding_is_deterministic() -> None:
    items = [f"s{i}" for i in range(50)]
    forward, backward = set(items), set(reversed(items))
    assert encode(forward) == encode(backward)
    assert encode(frozenset(items)) == encode(frozenset(reversed(items)))


def test_encode_is_thread_safe() -> None:
    values = [(i, {"k": [i, (i, str(i))]}, Point(i, i), {i, -i}, bytearray(b"%d" % i)) for i in range(300)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda v: decode(encode(v)), values))
    assert all(same(r, v) for r, v in zip(results, values, strict=True))


# --------------------------------------------------------------------------- encode failures

UNSUPPORTED = [
    pytest.param(object(), "object", id="object"),
    pytest.param(lambda: None, "function", id="lambda"),
    pytest.param(IntSub(3), f"{__name__}.IntSub", id="intsubclass"),
    pytest.param(StrSub("s"), f"{__name__}.StrSub", id="strsubclass"),
    pytest.param(collections.OrderedDict(a=1), "collections.OrderedDict", id="ordereddict"),
    pytest.param(memoryview(b"x"), "memoryview", id="memoryview"),
    pytest.param(Point, "type", id="classobject"),
    pytest.param(Point(object(), 1), "object", id="dataclassfield"),
    pytest.param(datetime(2024, 1, 1, tzinfo=CustomTz()), f"{__name__}.CustomTz", id="customtz"),
    pytest.param(Outer(), f"{__name__}.Outer", id="plainclass"),
]


@pytest.mark.parametrize("value, type_name", UNSUPPORTED)
def test_unsupported_types_raise_serialization_error(value: object, type_name: str) -> None:
    with pytest.raises(SerializationError) as info:
        encode(value)
    assert type_name in str(info.value)
    assert info.value.type_name == type_name
    assert isinstance(info.value, TypeError)


def test_socket_is_unsupported() -> None:
    with socket.socket() as sock, pytest.raises(SerializationError, match=r"socket\.socket"):
        encode({"conn": sock})


def test_error_names_the_path() -> None:
    with pytest.raises(SerializationError, match=r"object at \['items'\]\[2\]"):
        encode({"items": [1, 2, object()]})
    with pytest.raises(SerializationError, match=r"at \[0\]\.origin\.x"):
        encode((Order([], {}, Point(object(), 1)),))


def test_cycles_raise_serialization_error() -> None:
    loop: list = []
    loop.append(loop)
    with pytest.raises(SerializationError):
        encode(loop)
    holder: list = []
    tup = (holder,)
    holder.append(tup)
    with pytest.raises(SerializationError):
        encode(tup)
    assert decode(encode([1, (2,)])) == [1, (2,)]  # the codec still works afterwards


# --------------------------------------------------------------------------- decode security

@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "_registered", dict(codec._registered))
    monkeypatch.setattr(codec, "_trusted_modules", set(codec._trusted_modules))


def _write_module(tmp_path: Path, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))


def test_unregistered_module_is_never_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               isolated_registry: None) -> None:
    name = f"ergon_codec_evil_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "imported.txt"
    _write_module(tmp_path, name, f"""
        import dataclasses, pathlib
        pathlib.Path({str(marker)!r}).write_text("imported")

        @dataclasses.dataclass
        class Payload:
            x: int
    """)
    monkeypatch.syspath_prepend(str(tmp_path))  # importable, so only the codec's restraint keeps it out

    @dataclasses.dataclass
    class Payload:
        x: int
    Payload.__module__ = name
    Payload.__qualname__ = "Payload"

    class Evil(enum.Enum):
        A = 1
    Evil.__module__ = name

    for value in (Payload(1), [Evil.A]):
        data = encode(value)
        with pytest.raises(DecodeError, match="register") as info:
            decode(data)
        assert name in str(info.value)
        assert name not in sys.modules and not marker.exists()

    register_module(name)  # trusted, but decoding still must not import it
    with pytest.raises(DecodeError, match="not imported"):
        decode(encode(Payload(1)))
    assert name not in sys.modules and not marker.exists()


def _forged_dataclass(name: str, fields: dict) -> bytes:
    return msgpack.packb(msgpack.ExtType(codec._DATACLASS, msgpack.packb([name, fields])))


def test_trusted_module_only_yields_its_own_dataclasses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        isolated_registry: None) -> None:
    suffix = uuid.uuid4().hex[:8]
    home, user = f"ergon_codec_home_{suffix}", f"ergon_codec_user_{suffix}"
    _write_module(tmp_path, home, """
        import dataclasses

        @dataclasses.dataclass
        class Thing:
            x: int
    """)
    _write_module(tmp_path, user, f"""
        import os
        from {home} import Thing

        def helper():
            return 1
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module(user)
    register_module(user)
    for forged in (f"{user}:Thing", f"{user}:helper", f"{user}:os.system", f"{user}:os"):
        with pytest.raises(DecodeError):
            decode(_forged_dataclass(forged, {}))
    assert codec.resolve_class(f"{user}:Thing") is None
    register_module(home)
    thing = sys.modules[home].Thing
    assert decode(_forged_dataclass(f"{home}:Thing", {"x": 3})) == thing(3)


def test_register_module_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_registry: None) -> None:
    name = f"ergon_codec_models_{uuid.uuid4().hex[:8]}"
    _write_module(tmp_path, name, """
        import dataclasses, enum

        class Kind(enum.Enum):
            A = "a"

        @dataclasses.dataclass(frozen=True, slots=True)
        class Item:
            kind: Kind
            tags: tuple

        class Box:
            @dataclasses.dataclass
            class Lid:
                open: bool

        class Oops(Exception):
            pass
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    value = [module.Item(module.Kind.A, ("x", 1)), module.Box.Lid(True)]
    data = encode(value)
    with pytest.raises(DecodeError, match="register_type"):
        decode(data)
    register_module(name)
    assert same(decode(data), value)
    assert codec.resolve_class(f"{name}:Oops") is module.Oops
    assert codec.resolve_class(f"{name}:Box") is None  # plain classes are not trusted
    assert codec.resolve_class(f"{name}:Nope") is None


def test_register_type_path(isolated_registry: None) -> None:
    @dataclasses.dataclass
    class Local:
        n: int

    class LocalEnum(enum.IntEnum):
        ONE = 1

    value = {"item": Local(5), "enum": LocalEnum.ONE}
    data = encode(value)
    with pytest.raises(DecodeError, match="register"):
        decode(data)  # module is trusted, but <locals> classes are not reachable by name
    assert register_type(Local) is Local
    register_type(LocalEnum)
    assert same(decode(data), value)
    assert codec.resolve_class(f"{Local.__module__}:{Local.__qualname__}") is Local


def test_register_type_rejects_other_things(isolated_registry: None) -> None:
    for bad in (int, object(), "Point", Outer):
        with pytest.raises(TypeError):
            register_type(bad)  # type: ignore[arg-type]
    assert register_type(ValueError) is ValueError


GARBAGE = [
    pytest.param(b"", id="empty"),
    pytest.param(b"\xc1", id="neverused"),
    pytest.param(b"\x92\x01", id="truncated"),
    pytest.param(b"\x01\x02", id="extradata"),
    pytest.param(b"\x81\x90\x01", id="unhashablekey"),
    pytest.param("not bytes", id="str"),
    pytest.param(msgpack.packb(msgpack.ExtType(99, b"")), id="unknownext"),
    pytest.param(msgpack.packb(msgpack.ExtType(codec._TUPLE, b"\xff")), id="badtuple"),
    pytest.param(msgpack.packb(msgpack.ExtType(codec._UUID, b"abc")), id="baduuid"),
    pytest.param(msgpack.packb(msgpack.ExtType(codec._DECIMAL, b"abc")), id="baddecimal"),
    pytest.param(msgpack.packb(msgpack.ExtType(codec._DATETIME, msgpack.packb([1, 2]))), id="baddatetime"),
    pytest.param(msgpack.packb(msgpack.ExtType(codec._DATE, msgpack.packb("x"))), id="baddate"),
    pytest.param(msgpack.packb(msgpack.ExtType(codec._SET, msgpack.packb([[1]]))), id="unhashableset"),
    pytest.param(_forged_dataclass(f"{__name__}:Point", {"zz": 1}), id="wrongfields"),
    pytest.param(msgpack.packb(msgpack.ExtType(codec._DATACLASS, msgpack.packb([7, {}]))), id="badname"),
    pytest.param(msgpack.packb(msgpack.ExtType(codec._ENUM, msgpack.packb([f"{__name__}:Color", "blue"]))),
                 id="badenumvalue"),
    pytest.param(msgpack.packb(msgpack.ExtType(codec._ENUM, msgpack.packb([f"{__name__}:Point", 1]))),
                 id="notanenum"),
]


@pytest.mark.parametrize("data", GARBAGE)
def test_garbage_raises_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)


# --------------------------------------------------------------------------- args_hash

HASH_SNIPPET = textwrap.dedent("""
    from decimal import Decimal
    from ergon_actors.codec import args_hash
    print(args_hash((1, "a", (2, 3), {"x", "y", "z", "w"}, Decimal("1.5"), b"b"), {"kw": [None], "a": 2.5}))
    print(args_hash((object(),), {"f": len}))
""")


def _in_process_hashes() -> list[int]:
    return [
        args_hash((1, "a", (2, 3), {"x", "y", "z", "w"}, Decimal("1.5"), b"b"), {"a": 2.5, "kw": [None]}),
        args_hash((object(),), {"f": len}),
    ]


@pytest.mark.parametrize("seed", ["0", "12345"])
def test_args_hash_is_stable_across_processes(seed: str) -> None:
    root = str(Path(codec.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONHASHSEED=seed,
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", HASH_SNIPPET], env=env, capture_output=True, text=True,
                         timeout=20, check=True).stdout.split()
    assert [int(x) for x in out] == _in_process_hashes()


def test_args_hash_distinguishes_and_fits_63_bits() -> None:
    calls = [((1,), {}), ((2,), {}), ((), {"a": 1}), (((1,),), {}), (([1],), {}), ((True,), {}),
             ((1.0,), {}), (("1",), {}), ((Level.LOW,), {}), ((Point(1, 2),), {}), ((object(),), {}),
             ((lambda: 1,), {})]
    hashes = [args_hash(a, k) for a, k in calls]
    assert len(set(hashes)) == len(hashes)
    assert all(isinstance(h, int) and 0 <= h < 2**63 for h in hashes)
    assert args_hash((1,), {"a": 1, "b": 2}) == args_hash((1,), {"b": 2, "a": 1})
    assert args_hash((object(),), {}) == args_hash((object(),), {})  # fallback: type names only


def test_concurrent_args_hash_matches() -> None:
    expected = args_hash(((1, 2), {3}), {"k": Point(1, 2)})
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(args_hash(((1, 2), {3}), {"k": Point(1, 2)})))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 8


def test_numpy_arrays_and_scalars_round_trip_with_dtype_and_shape() -> None:
    np = pytest.importorskip("numpy")  # the test extra installs it
    values = [np.arange(12.0).reshape(3, 4), np.array([[1, 2], [3, 4]], dtype=np.int16).T,
              np.array(["ab", "c"]), np.zeros((0, 3)), np.float32(1.5), np.int64(-7), np.bool_(True)]
    for value in values:
        back = decode(encode(value))
        assert type(back) is type(value) and back.dtype == value.dtype
        assert np.array_equal(back, value) and np.shape(back) == np.shape(value)
    back = decode(encode(np.ones(3)))
    back[0] = 5.0  # a decoded array is writable, not a view of the stored bytes
    assert args_hash((np.ones(3),), {}) == args_hash((np.ones(3),), {}) != args_hash((np.zeros(3),), {})


def test_numpy_values_of_python_objects_are_refused_both_ways() -> None:
    np = pytest.importorskip("numpy")
    with pytest.raises(SerializationError, match="dtype object"):
        encode(np.array([object()]))
    forged = msgpack.packb(msgpack.ExtType(14, msgpack.packb(["|O", [1], b"\0" * 8])))
    with pytest.raises(DecodeError, match="Python objects"):
        decode(forged)
