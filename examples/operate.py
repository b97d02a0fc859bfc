"""Flows to try the operator's commands on (docs/operating.md walks through them):

    export ERGON_STORE=sqlite:///shop.db
    python -m ergon_actors schedule examples.operate:Payment --args '{"order_id": "A1", "amount": "12.50"}'
    PAYMENTS_DOWN=1 python -m ergon_actors run examples.operate --until-idle   # charge fails: FAILED
    python -m ergon_actors list --status failed
    python -m ergon_actors retry FLOW_ID                                      # from the failed step
    python -m ergon_actors run examples.operate --until-idle                   # COMPLETE
"""

import os
from dataclasses import dataclass
from decimal import Decimal

from ergon_actors import flow, flow_type, step
from ergon_actors.executor import await_external_signal


@dataclass
@flow_type
class Payment:
    order_id: str
    amount: Decimal

    @step
    async def reserve(self) -> str:
        return f"reservation-{self.order_id}"

    @step
    async def charge(self, reservation: str) -> Decimal:
        if os.environ.get("PAYMENTS_DOWN"):
            raise ConnectionError("the payment gateway is down")
        return self.amount

    @step
    async def receipt(self, charged: Decimal) -> str:
        return f"receipt {self.order_id}: {charged}"

    @flow
    async def run(self) -> str:
        return await self.receipt(await self.charge(await self.reserve()))


@dataclass
@flow_type
class Approval:
    order_id: str

    @step
    async def request(self) -> str:
        return f"approval-{self.order_id}"

    @flow
    async def run(self) -> str:
        name = await self.request()
        decision = await await_external_signal(name, timeout="1d")
        return f"{self.order_id}: {decision}"
