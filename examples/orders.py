"""A small order flow: three durable steps. Run it under the supervisor:

    python -m ergon_actors schedule examples.orders:OrderFlow --args '{"order_id": "A1", "amount": 12.5}'
    python -m ergon_actors run examples.orders --workers 2 --until-idle
"""

from dataclasses import dataclass

from ergon_actors import flow, flow_type, step


@dataclass
@flow_type
class OrderFlow:
    order_id: str
    amount: float

    @step
    async def reserve(self) -> str:
        return f"reservation-{self.order_id}"

    @step
    async def charge(self, reservation: str) -> str:
        return f"receipt-{self.order_id}-{self.amount:.2f}"

    @step
    async def ship(self, receipt: str) -> str:
        return f"shipped-{self.order_id}"

    @flow
    async def run(self) -> str:
        reservation = await self.reserve()
        receipt = await self.charge(reservation)
        return await self.ship(receipt)
