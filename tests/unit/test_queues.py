"""Queue objects, the queues setting and where a flow is scheduled: checked before anything is stored."""

from dataclasses import dataclass

import pytest

from ergon_actors import Queue, flow, flow_type
from ergon_actors.config import Settings, parse_queue_overrides
from ergon_actors.core.queues import QueueLimits, overridden
from ergon_actors.errors import ConfigError
from ergon_actors.executor.definition import placement

pytestmark = pytest.mark.timeout(10)

ORDERS = Queue("orders", concurrency=4, key="customer", key_concurrency=1, rate_limit=100, rate_period="1m",
               priority=3)


@dataclass
@flow_type(queue=ORDERS)
class Order:
    customer: str
    amount: int

    @flow
    async def run(self) -> None: ...


@dataclass
@flow_type
class Plain:
    x: int

    @flow
    async def run(self) -> None: ...


def test_a_queue_parses_its_period_and_finds_a_flows_key_and_priority():
    assert ORDERS.limits == QueueLimits("orders", 4, None, 1, 100, 60.0)
    where = placement(Order("c-7", 5))
    assert (where.name, where.priority, where.key) == ("orders", 3, "c-7")
    assert placement(Order("c-7", 5), priority=-2).priority == -2
    assert placement(Plain(1)).name is None and placement(Plain(1), "bulk").name == "bulk"
    by_function = Queue("q", key=lambda f: f.amount * 2, key_concurrency=2)
    assert by_function.key_of(Order("c", 21)) == "42"


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "has space"}, "queue name"),
    ({"name": "q", "concurrency": 0}, "concurrency must be an integer >= 1"),
    ({"name": "q", "rate_limit": 2.5}, "rate_limit must be an integer"),
    ({"name": "q", "rate_period": "soon"}, "rate_period"),
    ({"name": "q", "key_concurrency": 1}, "key_concurrency needs a key"),
    ({"name": "q", "priority": "high"}, "priority must be an integer"),
])
def test_bad_queues_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Queue(**kwargs)


def test_bad_placements_are_refused():
    with pytest.raises(ConfigError, match="key field 'customer' is not a field of Plain"):
        placement(Plain(1), ORDERS)
    with pytest.raises(ConfigError, match="priority must be an integer"):
        placement(Order("c", 1), priority=2**40)


def test_the_queues_setting_overrides_limits_and_is_checked_when_read():
    overrides = parse_queue_overrides(" orders:concurrency=8, rate=10/1s ; bulk:worker_concurrency=none")
    assert overrides == {"orders": {"concurrency": 8, "rate_limit": 10, "rate_period": 1.0},
                         "bulk": {"worker_concurrency": None}}
    assert overridden(ORDERS.limits, overrides) == QueueLimits("orders", 8, None, 1, 10, 1.0)
    assert overridden(ORDERS.limits, {}) is ORDERS.limits
    assert Settings.from_env({"ERGON_QUEUES": "orders:rate=none"}).queues == "orders:rate=none"
    for bad, message in [("orders", "write NAME:limit=value"), ("orders:speed=3", "limits are"),
                         ("orders:concurrency=x", "not a number"), ("orders:rate=5/often", "N/PERIOD")]:
        with pytest.raises(ConfigError, match=message):
            Settings(queues=bad)
