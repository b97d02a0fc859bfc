"""A service embedding the supervisor and the dashboard: both in one event loop.

    python examples/embed_dashboard.py           (reads the overview once, prints what it shows)
    python examples/embed_dashboard.py --serve   (prints the link to open; Ctrl-C stops)

Needs the dashboard extra: pip install 'ergon-actors[dashboard]'.
"""

import asyncio
import contextlib
import os
import re
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # see examples/embed.py

from ergon_actors.dashboard import DashboardServer
from ergon_actors.runtime import Supervisor
from examples.orders import OrderFlow


def read(url: str, token: str) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


async def main(serve: bool) -> None:
    token = os.environ.get("ERGON_DASHBOARD_TOKEN") or None  # None: a random one, in the link
    with tempfile.TemporaryDirectory() as folder:
        store = f"sqlite:///{folder}/orders.db"
        # port=0: any free port. The snapshots come from this supervisor, in this process.
        async with (Supervisor("examples.orders", store=store, workers=2) as sup,
                    DashboardServer(store, port=0, token=token, snapshots=lambda: [sup.snapshot()]) as dash):
            print(await sup.result(await sup.schedule(OrderFlow("A1", 12.5)), timeout=30))
            if serve:
                print(f"dashboard: {dash.url}", flush=True)
                await asyncio.Event().wait()  # until Ctrl-C
            base = dash.url.split("/?")[0]
            html = await asyncio.to_thread(read, base + "/", dash.token)
            actors = re.findall(r"<tr><td>(journal|worker-\d+)</td>", html)
            print(f"the dashboard shows {len(actors)} actors: {', '.join(actors)}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends --serve
        asyncio.run(main("--serve" in sys.argv[1:]))
