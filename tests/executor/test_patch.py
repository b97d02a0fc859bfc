"""patched() and deprecate_patch(): a flow started on old code replays it, a new flow takes the new
branch, and a replay that meets a different call than journaled names the patch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest

from ergon_actors import (Completed, Executor, NondeterminismError, Suspended, await_external_signal, codec,
                          deprecate_patch, flow, flow_type, patched, step)
from ergon_actors.core import FlowStatus
from ergon_actors.storage import LogBase
from tests.helpers import run

closing: list[LogBase] = []

MakeStore = Callable[[], Awaitable[LogBase]]


@pytest.fixture(autouse=True)
def close_stores() -> Iterator[None]:
    yield
    while closing:
        run(closing.pop().close())


@dataclass
class OrderSteps:
    """The steps every version of the Order flow below has."""

    order: str

    @step
    async def check_fraud(self) -> str:
        return "checked"

    @step
    async def charge(self) -> str:
        return f"charged {self.order}"

    @step
    async def ship(self) -> str:
        return "shipped by post"

    @step
    async def courier(self) -> str:
        return "sent by courier"


@dataclass
@flow_type(name="Order")
class OrderV1(OrderSteps):
    """The old code: charge, wait for approval, ship."""

    @flow
    async def run(self) -> str:
        charged = await self.charge()
        await await_external_signal(f"go-{self.order}")
        return f"{charged}; {await self.ship()}"


@dataclass
@flow_type(name="Order")
class OrderV2(OrderSteps):
    """The new code: a fraud check before charging, courier shipping, each behind a patch."""

    @flow
    async def run(self) -> str:
        parts = []
        if await patched("fraud-check"):
            parts.append(await self.check_fraud())
        parts.append(await self.charge())
        await await_external_signal(f"go-{self.order}")
        parts.append(await self.courier() if await patched("courier") else await self.ship())
        return "; ".join(parts)


@dataclass
@flow_type(name="Order")
class OrderV3(OrderSteps):
    """The fraud check for every flow left: its patch deprecated; courier still patched."""

    @flow
    async def run(self) -> str:
        deprecate_patch("fraud-check")
        parts = [await self.check_fraud(), await self.charge()]
        await await_external_signal(f"go-{self.order}")
        parts.append(await self.courier() if await patched("courier") else await self.ship())
        return "; ".join(parts)


@dataclass
@flow_type(name="Order")
class OrderUnpatched(OrderSteps):
    """OrderV2's change without its patches: replaying an old flow must fail, naming a patch."""

    @flow
    async def run(self) -> str:
        await self.check_fraud()
        return await self.charge()


async def _start(store: LogBase, flow: object, flow_id: str) -> None:
    """Run a flow until it waits for its go signal, then send the signal."""
    assert isinstance(await Executor(flow, store, flow_id).run(), Suspended)
    assert await store.send_signal(f"go-{flow_id}", codec.encode(True))


async def _finish(store: LogBase, flow: object, flow_id: str) -> object:
    outcome = await Executor(flow, store, flow_id).run()
    assert isinstance(outcome, Completed), outcome
    return outcome.unwrap()


def test_a_flow_started_before_a_patch_replays_the_old_branch(make_store: MakeStore) -> None:
    async def body() -> None:
        store = await make_store()
        closing.append(store)
        await _start(store, OrderV1("o1"), "o1")
        assert await _finish(store, OrderV2("o1"), "o1") == "charged o1; sent by courier"
        names = [s.name for s in await store.load_steps("o1")]
        # no fraud check: it started before that change; courier: it reached that point after it
        assert names == ["charge", "signal:go-o1", "patch:courier", "courier"]
    run(body())


def test_a_new_flow_takes_every_new_branch_and_replays_it(make_store: MakeStore) -> None:
    async def body() -> None:
        store = await make_store()
        closing.append(store)
        await _start(store, OrderV2("o2"), "o2")
        assert await _finish(store, OrderV2("o2"), "o2") == "checked; charged o2; sent by courier"
        names = [s.name for s in await store.load_steps("o2")]
        assert names == ["patch:fraud-check", "check_fraud", "charge", "signal:go-o2", "patch:courier", "courier"]
    run(body())


def test_deprecate_patch_replays_flows_with_and_without_its_marker(make_store: MakeStore) -> None:
    async def body() -> None:
        store = await make_store()
        closing.append(store)
        await _start(store, OrderV2("with"), "with")  # journaled the fraud-check marker
        await _start(store, OrderV3("without"), "without")  # started after the deprecation: no marker
        assert await _finish(store, OrderV3("with"), "with") == "checked; charged with; sent by courier"
        assert await _finish(store, OrderV3("without"), "without") == "checked; charged without; sent by courier"
        assert [s.name for s in await store.load_steps("without")][:2] == ["check_fraud", "charge"]
    run(body())


def test_a_missing_patch_fails_the_replay_naming_the_change(make_store: MakeStore) -> None:
    async def body() -> None:
        store = await make_store()
        closing.append(store)
        await _start(store, OrderV1("o3"), "o3")
        outcome = await Executor(OrderUnpatched("o3"), store, "o3").run()
        assert isinstance(outcome, Completed) and outcome.status == FlowStatus.FAILED
        record = await store.get_flow("o3")
        assert record is not None and record.status == FlowStatus.FAILED and record.error is not None
        assert record.error.type == "ergon_actors.errors:NondeterminismError"
        assert "recorded charge" in record.error.message and "called check_fraud" in record.error.message
        assert "patched('check_fraud')" in record.error.message
    run(body())


def test_removing_a_patch_too_early_names_the_journaled_patch(make_store: MakeStore) -> None:
    async def body() -> None:
        store = await make_store()
        closing.append(store)
        await _start(store, OrderV2("o4"), "o4")
        outcome = await Executor(OrderUnpatched("o4"), store, "o4").run()
        assert isinstance(outcome, Completed) and outcome.status == FlowStatus.FAILED
        record = await store.get_flow("o4")
        assert record is not None and record.error is not None
        assert "patch:fraud-check" in record.error.message
        assert "deprecate_patch('fraud-check')" in record.error.message
    run(body())


def test_the_error_carries_the_patch_it_names() -> None:
    missing = NondeterminismError("f", 0, "patch:x(args #0)", "a(args #1)", patch="x", missing=True)
    assert (missing.patch, missing.missing) == ("x", True)
    assert "deprecate_patch('x')" in str(missing)
    add = NondeterminismError("f", 0, "a(args #0)", "b(args #1)", patch="b")
    assert (add.patch, add.missing) == ("b", False) and "patched('b')" in str(add)


def test_patched_outside_a_flow_or_with_a_bad_id_is_an_error() -> None:
    async def body() -> None:
        with pytest.raises(RuntimeError, match="inside a running flow"):
            await patched("x")
        with pytest.raises(RuntimeError, match="inside a running flow"):
            deprecate_patch("x")
    run(body())


@dataclass
@flow_type
class BadPatch:
    change: object

    @flow
    async def run(self) -> bool:
        return await patched(self.change)  # type: ignore[arg-type]


def test_a_change_id_that_is_not_a_string_fails_the_flow_clearly(make_store: MakeStore) -> None:
    async def body() -> None:
        store = await make_store()
        closing.append(store)
        outcome = await Executor(BadPatch(""), store, "bad").run()
        assert isinstance(outcome, Completed) and outcome.status == FlowStatus.FAILED
        record = await store.get_flow("bad")
        assert record is not None and record.error is not None
        assert "a change id is a non-empty string" in record.error.message
    run(body())
