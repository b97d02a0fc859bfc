"""The worker actor: an executor Worker whose store is the journal client."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import resource
import signal
import time
from typing import Any

import zmq.asyncio

from ..config import Settings
from ..decorators import definition_of
from ..errors import FlowDefinitionError
from ..executor import Worker
from .actor import SupervisorLink
from .client import JournalClient

__all__ = ["run_worker", "discover_flows"]

log = logging.getLogger(__name__)


def discover_flows(module_names: list[str]) -> list[type]:
    """Import each module and return the @flow_type classes it defines or imports.

    Raises:
        ImportError: a module cannot be imported.
        FlowDefinitionError: a module defines no flow type, or an invalid one.
    """
    found: dict[int, type] = {}
    for module_name in module_names:
        module = importlib.import_module(module_name)
        classes = [v for v in vars(module).values()
                   if isinstance(v, type) and "__ergon_flow_type__" in vars(v)]
        if not classes:
            raise FlowDefinitionError(f"module {module_name!r} defines no @flow_type class")
        for cls in classes:
            definition_of(cls)
            found[id(cls)] = cls
    return list(found.values())


async def run_worker(name: str, spec: dict[str, Any]) -> int:
    settings = Settings(**spec["settings"])
    ctx = zmq.asyncio.Context()
    link = SupervisorLink(ctx, spec["supervisor"], name)
    try:
        classes = discover_flows(spec["modules"])
    except Exception as exc:
        link.send("failed", f"{type(exc).__name__}: {exc}")
        log.error("worker cannot load flows from %s: %s", ", ".join(spec["modules"]), exc)
        link.close()
        return 78
    client = JournalClient(ctx, spec["journal"], hwm=settings.high_water_mark,
                           resend_after=settings.resend_after, max_message_size=settings.max_message_size)
    worker = Worker(client, spec["worker_id"], concurrency=settings.concurrency,
                    lease_seconds=settings.lease_seconds)
    for cls in classes:
        await worker.register(cls)
    drain = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, drain.set)
    link.send("ready", {"pid": os.getpid(), "worker_id": worker.worker_id, "flow_types": worker.flow_types})
    running = asyncio.get_running_loop().create_task(worker.run())
    grace = settings.grace
    try:
        beat_at = 0.0
        while not drain.is_set() and not running.done():
            message = await link.receive(min(settings.heartbeat_interval, 0.1))
            if message is not None and message[0] == "drain":
                grace = float(message[1])
                drain.set()
            if time.monotonic() >= beat_at:
                stats = worker.statistics()
                link.send("hb", {"running": stats.running, "finished": stats.finished,
                                 "abandoned": stats.abandoned, "resent": client.resent,
                                 "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})
                beat_at = time.monotonic() + settings.heartbeat_interval
        if running.done() and running.exception() is not None:
            raise running.exception()
        worker.stop()
        await running
        cancelled = await worker.drain(grace)
        link.send("drained", {"cancelled": cancelled})
        return 0
    finally:
        await client.close()
        link.close()
        ctx.term()
