"""A service embedding the supervisor: start it, schedule a flow, await its result, shut down.

    python examples/embed.py            (from any directory; prints shipped-A1)
"""

import asyncio
import sys
import tempfile
from pathlib import Path

# The worker processes import the flows' module by name, with this process's sys.path: put the
# repository on it, so that examples.orders imports wherever this file is run from.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ergon_actors.runtime import Supervisor
from examples.orders import OrderFlow


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with Supervisor("examples.orders", store=f"sqlite:///{folder}/orders.db", workers=2) as sup:
            flow_id = await sup.schedule(OrderFlow("A1", 12.5))
            print(await sup.result(flow_id, timeout=30))  # shipped-A1


if __name__ == "__main__":
    asyncio.run(main())
