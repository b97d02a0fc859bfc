"""What only the Redis store promises: AOF durability across a crash of Redis, StoreUnavailableError
when Redis cannot be reached, indexes that always agree with the flows, claims that never scan."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ergon_actors.core import FlowStatus, StepRecord
from ergon_actors.errors import ConfigError, FlowNotFoundError, InvalidCommandError, StoreUnavailableError
from ergon_actors.storage import open_store
from ergon_actors.storage.commands import CancelFlow, ClaimFlows, QueryFlows, Scheduled, ScheduleFlow
from ergon_actors.storage.redis import RedisExecutionLog

from ..redis_server import RedisServer, empty_store, free_port

pytestmark = [pytest.mark.timeout(120), pytest.mark.redis]

LEASE = 30.0


def step(position: int, result: bytes = b"r") -> StepRecord:
    return StepRecord(position, f"step{position}", 7 << 60 | position, result=result)


def without_time(s: StepRecord) -> StepRecord:
    return StepRecord(s.position, s.name, s.args_hash, s.status, s.result, s.error, s.attempt, 0.0,
                      s.tries, s.retry_at)


@pytest.fixture
def own_server(tmp_path):
    """A redis-server of this test alone, which it may kill and restart."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)  # in case the test paused it
        server.stop()


def test_data_survives_a_redis_sigkill_and_restart(own_server):
    async def body():
        log = await RedisExecutionLog(own_server.url).connect()
        try:
            await log.schedule_flow("a", "Order", b"args-a", version="v1")
            await log.schedule_flow("b", "Order", b"args-b")
            (claims,) = await log.execute([ClaimFlows("w1", "req-1", 1, LEASE, flow_id="a")])
            epoch = claims[0].flow.epoch
            await log.append_step("a", epoch, step(0, b"zero"))
            assert await log.send_signal("go", b"payload") is True
            flow_a, steps_a = await log.get_flow("a"), await log.load_steps("a")
            flow_b = await log.get_flow("b")

            own_server.kill()  # nothing gets to shut down cleanly: only what the AOF fsynced is left
            own_server.start()

            # the same store carries on: it reconnects, and reloads its scripts (Redis forgot them)
            await log.append_step("a", epoch, step(1, b"one"))
            assert [without_time(s) for s in await log.load_steps("a")] == [step(0, b"zero"), step(1, b"one")]
        finally:
            await log.close()

        fresh = await RedisExecutionLog(own_server.url).connect()
        try:
            assert await fresh.get_flow("a") == flow_a
            assert await fresh.get_flow("b") == flow_b
            steps = await fresh.load_steps("a")
            assert steps[0] == steps_a[0] and len(steps) == 2
            (again,) = await fresh.execute([ClaimFlows("w1", "req-1", 1, LEASE, flow_id="a")])
            assert [c.flow for c in again] == [flow_a]  # the re-sent claim is still recognised
            assert await fresh.send_signal("go", b"other") is False
            (claim_b,) = await fresh.claim("w2", 10, LEASE)
            assert (claim_b.flow.flow_id, claim_b.flow.epoch) == ("b", 1)
        finally:
            await fresh.close()

    asyncio.run(body())


def test_connect_to_unreachable_redis_is_store_unavailable():
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def body():
        with pytest.raises(StoreUnavailableError) as info:
            await RedisExecutionLog(url).connect()
        assert url in str(info.value)
        with pytest.raises(StoreUnavailableError):
            await open_store(url)

    asyncio.run(body())


def test_execute_after_redis_died_is_store_unavailable_and_recovers(own_server):
    async def body():
        log = await RedisExecutionLog(own_server.url).connect()
        try:
            await log.schedule_flow("a", "Order", b"x")
            own_server.kill()
            with pytest.raises(StoreUnavailableError) as info:
                await log.execute([ScheduleFlow("b", "Order", b"x")])
            assert own_server.url in str(info.value)
            with pytest.raises(StoreUnavailableError):
                await log.get_flow("a")
            own_server.start()
            assert (await log.schedule_flow("b", "Order", b"x")).created is True  # nothing was applied
            assert [f.flow_id for f in await log.list_flows()] == ["a", "b"]
        finally:
            await log.close()

    asyncio.run(body())


def test_a_redis_that_stops_answering_is_store_unavailable_after_the_timeout(own_server):
    async def body():
        log = await RedisExecutionLog(own_server.url, timeout=0.3).connect()
        try:
            os.kill(own_server.pid, signal.SIGSTOP)
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError) as info:
                await log.schedule_flow("a", "Order", b"x")
            assert time.monotonic() - started < 5
            assert own_server.url in str(info.value)
            os.kill(own_server.pid, signal.SIGCONT)
            # the batch may or may not have been applied: sending it again is safe
            await log.schedule_flow("a", "Order", b"x")
            assert (await log.get_flow("a")).status == FlowStatus.PENDING
        finally:
            await log.close()

    asyncio.run(body())


@contextlib.asynccontextmanager
async def out_of_memory(url: str) -> AsyncIterator[None]:
    """Redis refuses every write (maxmemory reached, noeviction) inside the block."""
    raw = aioredis.Redis.from_url(url)
    await raw.config_set("maxmemory", 1)
    try:
        yield
    finally:
        await raw.config_set("maxmemory", 0)
        await raw.aclose()


@contextlib.asynccontextmanager
async def busy_in_a_script(url: str) -> AsyncIterator[None]:
    """A script loops inside the block, so Redis answers BUSY to everyone else."""
    raw, spinner = aioredis.Redis.from_url(url), aioredis.Redis.from_url(url)
    await raw.config_set("busy-reply-threshold", 50)  # ms before others are told BUSY
    spin = asyncio.create_task(spinner.eval("while true do end", 0))
    try:
        deadline = time.monotonic() + 10
        while not await answers_busy(raw):
            assert time.monotonic() < deadline, "Redis never became busy"
            await asyncio.sleep(0.01)
        yield
    finally:
        await raw.script_kill()
        with pytest.raises(ResponseError, match="killed"):
            await spin
        await spinner.aclose()
        await raw.aclose()


async def answers_busy(raw: aioredis.Redis) -> bool:
    try:
        await raw.ping()
    except ResponseError as exc:
        return "BUSY" in str(exc)
    return False


@pytest.mark.parametrize("fault, words", [(out_of_memory, "OOM"), (busy_in_a_script, "BUSY")])
def test_a_redis_refusing_work_is_store_unavailable_and_the_same_store_recovers(own_server, fault, words):
    async def body():
        log = await RedisExecutionLog(own_server.url, timeout=5).connect()
        try:
            await log.schedule_flow("a", "Order", b"x")
            async with fault(own_server.url):
                with pytest.raises(StoreUnavailableError, match=words) as info:
                    await log.schedule_flow("b", "Order", b"x")
                assert own_server.url in str(info.value)
            assert (await log.schedule_flow("b", "Order", b"x")).created is True
        finally:
            await log.close()

    asyncio.run(body())


def test_repr_names_the_url_without_its_password_and_whether_connected(redis_server):
    secret = RedisExecutionLog("redis://user:s3cret@127.0.0.1:6379/0", prefix="app")
    assert repr(secret) == "RedisExecutionLog('redis://user:***@127.0.0.1:6379/0', prefix='app', connected=False)"

    async def body():
        log = await empty_store(redis_server.url, "repr")
        try:
            assert repr(log) == f"RedisExecutionLog({redis_server.url!r}, prefix='repr', connected=True)"
        finally:
            await log.close()
        assert repr(log).endswith("connected=False)")

    asyncio.run(body())


def test_bad_urls_are_config_errors():
    for url in ("redis://127.0.0.1:6379/x", "redis://127.0.0.1:port/0", "redis:///0", "sqlite:///x.db"):
        with pytest.raises(ConfigError):
            RedisExecutionLog(url)


def test_open_store_opens_a_redis_url(redis_server):
    async def body():
        raw = aioredis.Redis.from_url(redis_server.url)
        try:
            stale = [key async for key in raw.scan_iter(match="ergon:*")]
            if stale:
                await raw.delete(*stale)
            log = await open_store(redis_server.url)
            try:
                assert isinstance(log, RedisExecutionLog)
                await log.schedule_flow("a", "Order", b"x")
                assert (await log.get_flow("a")).status == FlowStatus.PENDING
                assert await raw.exists("ergon:flow:a") == 1  # the default prefix
            finally:
                await log.close()
        finally:
            await raw.aclose()

    asyncio.run(body())


@contextlib.asynccontextmanager
async def store_and_raw(url: str, prefix: str) -> AsyncIterator[tuple[RedisExecutionLog, aioredis.Redis]]:
    """An emptied store under `prefix` and a plain client of the same Redis, both closed after."""
    log = await empty_store(url, prefix)
    raw = aioredis.Redis.from_url(url)
    try:
        yield log, raw
    finally:
        await raw.aclose()
        await log.close()


def test_a_batch_is_one_script_call_answering_each_command_in_its_place(redis_server):
    async def body():
        async with store_and_raw(redis_server.url, "batch") as (log, raw):
            await log.get_flow("warm-up")  # the pooled connection exists before counting
            await raw.config_resetstat()
            results = await log.execute([ScheduleFlow("a", "Order", b"x"), ScheduleFlow("b", "Order", b"x"),
                                         ClaimFlows("w1", "req-1", 1, LEASE, flow_id="a"),
                                         CancelFlow("nobody"), ScheduleFlow("a", "Order", b"x"),
                                         CancelFlow("b")])
            assert [r.created for r in (results[0], results[1], results[4])] == [True, True, False]
            assert [c.flow.flow_id for c in results[2]] == ["a"]
            assert isinstance(results[3], FlowNotFoundError) and results[5] == FlowStatus.CANCELLED
            stats = await raw.info("commandstats")
            calls = {name[8:]: s["calls"] for name, s in stats.items()}
            assert calls["evalsha"] == 1 and "multi" not in calls and "exec" not in calls, calls
            # no preflight round trip (SCRIPT EXISTS / LOAD) and no plain command outside the script
            assert not [name for name in calls if name.startswith(("script", "eval|", "client"))], calls
            assert calls.get("eval", 0) == 0

    asyncio.run(body())


def test_a_lua_error_in_one_command_leaves_the_batch_around_it_applied(redis_server):
    async def body():
        async with store_and_raw(redis_server.url, "luaerror") as (log, raw):
            # a flow hash without its seq: cancelling it fails inside Lua, after it may have written
            await raw.hset("luaerror:flow:broken", mapping={"flow_id": "broken", "status": "PENDING"})
            results = await log.execute([ScheduleFlow("a", "Order", b"x"), CancelFlow("broken"),
                                         ScheduleFlow("b", "Order", b"x")])
            assert results[0] == Scheduled("a", True) and results[2] == Scheduled("b", True)
            assert isinstance(results[1], InvalidCommandError) and "CancelFlow" in str(results[1])
            assert [f.flow_id for f in await log.list_flows()] == ["a", "b"]

    asyncio.run(body())


def test_a_redis_that_lost_its_script_cache_gets_it_again_and_the_batch_applies(redis_server):
    async def body():
        async with store_and_raw(redis_server.url, "flushed") as (log, raw):
            await log.schedule_flow("a", "Order", b"x")
            await raw.script_flush()  # as after a restart: the first call gets NOSCRIPT
            assert (await log.schedule_flow("b", "Order", b"x")).created is True
            assert [f.flow_id for f in await log.list_flows()] == ["a", "b"]

    asyncio.run(body())


async def assert_indexes_agree(url: str, prefix: str) -> None:
    """Every index key holds exactly what the flow hashes say it should."""
    raw = aioredis.Redis.from_url(url, decode_responses=True)
    binary = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in raw.scan_iter(match=f"{prefix}:*", count=1000)]
        flows = {}
        poisoned = set()
        for key in keys:
            if key.startswith(f"{prefix}:flow:"):  # its crashes and error are binary
                fields = await binary.hgetall(key)
                flows[key[len(prefix) + 6:]] = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
                if fields.get(b"error", b"").startswith(b"!poison"):
                    poisoned.add(key[len(prefix) + 6:])
        signals = set(await raw.hkeys(f"{prefix}:signals"))
        want: dict[str, dict[str, float]] = {}  # index key -> {flow id: score}

        def add(kind: str, name: str, flow_id: str, score: float = 0.0) -> None:
            want.setdefault(f"{prefix}:{kind}:{name}", {})[flow_id] = score

        for flow_id, f in flows.items():
            add("status", f["status"], flow_id, float(f["seq"]))
            if f["status"] in ("PENDING", "SUSPENDED") and "ready_at" in f:
                add("ready", f["flow_type"], flow_id, float(f["ready_at"]))
            if f["status"] == "RUNNING":
                add("leases", f["flow_type"], flow_id, float(f["lease_expires"]))
                add("owned", f["owner"], flow_id)
            else:
                assert "owner" not in f and "lease_expires" not in f, f
            if f["status"] == "SUSPENDED" and f.get("waiting_on", "").startswith("signal:"):
                add("waiting", f["waiting_on"][7:], flow_id)
        for kind in ("status", "ready", "leases", "owned", "waiting"):
            found = {}
            for key in (k for k in keys if k.startswith(f"{prefix}:{kind}:")):
                if kind in ("owned", "waiting"):
                    found[key] = {m: 0.0 for m in await raw.smembers(key)}
                else:
                    found[key] = dict(await raw.zrange(key, 0, -1, withscores=True))
            expected = {k: v for k, v in want.items() if k.startswith(f"{prefix}:{kind}:")}
            assert {k: v for k, v in found.items() if v} == expected, kind
        every = dict(await raw.zrange(f"{prefix}:all", 0, -1, withscores=True))
        assert every == {flow_id: float(f["seq"]) for flow_id, f in flows.items()}
        waiting = {k[len(prefix) + 9:] for k in want if k.startswith(f"{prefix}:waiting:")}
        assert await raw.zrange(f"{prefix}:waitnames", 0, -1) == sorted(waiting - signals)
        live = ("PENDING", "RUNNING", "SUSPENDED")
        assert await raw.smembers(f"{prefix}:suspects") == {
            i for i, f in flows.items() if "suspect" in f and f["status"] in live}
        assert await raw.smembers(f"{prefix}:quarantined") == {i for i in poisoned if flows[i]["status"] == "FAILED"}
    finally:
        await raw.aclose()
        await binary.aclose()


def test_indexes_agree_with_the_flows_after_a_mixed_workload(redis_server):
    async def body():
        url, prefix = redis_server.url, "indexes"
        log = await empty_store(url, prefix)
        try:
            for i in range(8):
                await log.schedule_flow(f"f{i}", "Order" if i % 2 else "Ship", b"x")
            await log.schedule_flow("later", "Ship", b"x", ready_at=time.time() + 3600)
            claims = {c.flow.flow_id: c.flow.epoch for c in await log.claim("w1", 6, LEASE)}
            assert len(claims) == 6
            f0, f1, f2, f3, f4, f5 = sorted(claims)
            await log.append_step(f0, claims[f0], step(0))
            await log.finish_flow(f0, claims[f0], FlowStatus.COMPLETE, result=b"ok")
            await log.suspend_flow(f1, claims[f1], time.time() - 1, attempt=2)
            assert await log.await_signal(f2, claims[f2], step(0), "sig-a") is None
            assert await log.await_signal(f3, claims[f3], step(0), "sig-b") is None
            assert await log.invoke_child(f4, claims[f4], step(0), ScheduleFlow("kid", "Kid", b"k")) is None
            assert await log.cancel_flow(f5) == FlowStatus.RUNNING
            await assert_indexes_agree(url, prefix)

            assert await log.send_signal("sig-a", b"a") is True
            assert await log.renew_leases("w1", 100, (f5,)) == 1
            assert await log.cancel_flow(f3) == FlowStatus.CANCELLED
            (kid,) = await log.claim("w2", 1, LEASE, flow_id="kid")
            await log.finish_flow("kid", kid.flow.epoch, FlowStatus.FAILED)
            await log.claim("w2", 3, LEASE)
            assert await log.release_worker("w1") == 1  # f5
            await assert_indexes_agree(url, prefix)

            suspects = await log.record_crash("w2", None, 9, "signal", 3)
            assert len(suspects) == 3
            await log.schedule_flow("poison", "Ship", b"x")
            await log.claim("w3", 1, LEASE, flow_id="poison")
            (poison,) = await log.record_crash("w3", 1, None, "exit", 1)
            assert poison.quarantined
            await assert_indexes_agree(url, prefix)
            while time.time() <= max(f.ready_at for f in suspects):  # due within 0.5 s
                await asyncio.sleep(0.01)
            (suspect,) = await log.claim("w4", 1, LEASE, solo=True)
            assert suspect.flow.suspect
            await log.finish_flow(suspect.flow.flow_id, suspect.flow.epoch, FlowStatus.COMPLETE)
            assert not (await log.get_flow(suspect.flow.flow_id)).suspect
            await assert_indexes_agree(url, prefix)
        finally:
            await log.close()

    asyncio.run(body())


@pytest.mark.slow
def test_a_claim_does_not_slow_down_with_100k_queued_flows(redis_server):
    async def body():
        log = await empty_store(redis_server.url, "deep")
        try:
            async def claim_times(n: int) -> float:
                times = []
                for _ in range(n):
                    started = time.perf_counter()
                    (_claim,) = await log.claim("w", 1, LEASE, flow_types=("Order",))
                    times.append(time.perf_counter() - started)
                return statistics.median(times)

            await log.execute([ScheduleFlow(f"s{i}", "Order", b"x") for i in range(50)])
            shallow = await claim_times(20)
            for start in range(0, 100_000, 5_000):
                await log.execute([ScheduleFlow(f"d{i}", "Order", b"x") for i in range(start, start + 5_000)])
            deep = await claim_times(50)
            assert deep < max(10 * shallow, 0.005), (shallow, deep)
        finally:
            await log.close()

    asyncio.run(body())


@pytest.mark.parametrize("budget", [7, 5000])
def test_query_merges_the_status_sets_in_schedule_order_within_its_budget(redis_server, budget):
    """Past one batch of each status set (200), with a budget that cuts pages short."""
    async def body():
        log = await empty_store(redis_server.url, f"query{budget}")
        await log.close()
        log = await RedisExecutionLog(redis_server.url, prefix=f"query{budget}", query_budget=budget).connect()
        try:
            ids = [f"f{i:04}" for i in range(700)]
            await log.execute([ScheduleFlow(i, "Order", b"a") for i in ids])
            await log.execute([CancelFlow(i) for i in ids[::3] + ids[500:600]])

            async def pages(query: QueryFlows) -> tuple[list[str], int]:
                found, cursor, short = [], None, 0
                while True:
                    page = await log.query_flows(replace(query, cursor=cursor))
                    found += [f.flow_id for f in page.flows]
                    short += len(page.flows) < query.limit and page.cursor is not None
                    if page.cursor is None:
                        return found, short
                    cursor = page.cursor

            for newest_first, expected in ((True, ids[::-1]), (False, ids)):
                found, short = await pages(QueryFlows(newest_first=newest_first, limit=100))
                assert found == expected
                assert (short > 0) == (budget < 100)
            found, _ = await pages(QueryFlows(statuses=("CANCELLED",), id_contains="f05", limit=30))
            assert found == ids[500:600][::-1]
        finally:
            await log.close()

    asyncio.run(body())


def test_a_store_written_before_the_set_of_every_flow_gets_it_when_opened(redis_server):
    async def body():
        log = await empty_store(redis_server.url, "older")
        await log.execute([ScheduleFlow(f"f{i}", "Order", b"a") for i in range(5)])
        await log.close()
        raw = aioredis.Redis.from_url(redis_server.url)
        try:
            await raw.delete("older:all")  # as a store written by a version without it
            log = await RedisExecutionLog(redis_server.url, prefix="older").connect()
            try:
                page = await log.query_flows(QueryFlows(newest_first=False))
                assert [f.flow_id for f in page.flows] == [f"f{i}" for i in range(5)]
            finally:
                await log.close()
            await assert_indexes_agree(redis_server.url, "older")
        finally:
            await raw.aclose()

    asyncio.run(body())


def test_batches_sent_while_others_are_under_way_apply_in_the_order_made(redis_server):
    """The journal keeps batches in flight: each must apply after the ones sent before it, also
    when every one of them meets NOSCRIPT and is sent again."""
    async def body():
        async with store_and_raw(redis_server.url, "ordered") as (log, raw):
            for flushed in (False, True):
                if flushed:
                    await raw.script_flush()  # as after a restart: every call in flight gets NOSCRIPT
                ids = [f"{flushed}-{i}" for i in range(20)]
                calls = [log.execute([command]) for i in ids
                         for command in (ScheduleFlow(i, "Order", b"x"), CancelFlow(i))]
                results = await asyncio.gather(*calls)
                assert results[0::2] == [[Scheduled(i, True)] for i in ids]
                assert results[1::2] == [[FlowStatus.CANCELLED]] * len(ids)  # never FlowNotFoundError

    asyncio.run(body())
