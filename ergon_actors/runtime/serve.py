"""Running a supervisor as a process's main work, with SIGINT and SIGTERM handled.

The first SIGINT or SIGTERM drains: steps in flight get `grace` seconds, then every process
stops. A second one stops at once. An interrupt while the actors are still starting lets the
start finish (it is bounded by `ready_timeout`), then drains; a second one cancels the start,
which kills what it had spawned. One during the checks before the start ends the run once they
are done, before any process was started.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from .supervisor import Supervisor

__all__ = ["serve"]


async def serve(sup: Supervisor, *, until_idle: bool = False, notify: Callable[[str], None] | None = None,
                prepare: Callable[[], Coroutine[Any, Any, object]] | None = None) -> bool:
    """Start `sup` and run it until it has shut down, handling SIGINT and SIGTERM.

    Args:
        sup: a supervisor not started yet.
        until_idle: shut down once no flow is running or due.
        notify: called with a line for the user at each interrupt.
        prepare: awaited first (checks that fail early with one clear message); an interrupt
            meanwhile lets it finish, then ends here, before any process was started.

    Returns:
        True if an interrupt cut the run short: before the start, or a second one (a command
        line exits 130 then); False after a drain or a shutdown of the supervisor's own.

    Raises:
        BrokenActorError: an actor failed to start.
        RestartIntensityError: the supervisor gave up.
        UnknownFlowTypeError: with until_idle, flows are due that no worker here serves.
        UnservedVersionError: with until_idle, flows are due of a code version not served here.
    """
    loop = asyncio.get_running_loop()
    interrupts = 0
    current: asyncio.Task[Any] | None = None  # preparing or starting
    preparing = prepare is not None
    started = False
    stopping: set[asyncio.Task[None]] = set()

    def say(line: str) -> None:
        if notify is not None:
            notify(line)

    def shut_down(grace: float | None) -> None:
        task = loop.create_task(sup.shutdown(grace))
        stopping.add(task)
        task.add_done_callback(stopping.discard)

    def on_signal() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            say("interrupted before any process started: stopping" if preparing
                else f"draining (up to {sup.settings.grace:g}s); interrupt again to stop now")
            if started:
                shut_down(None)
        elif interrupts == 2:
            say("second interrupt: stopping now")
            if started:
                shut_down(0)
            elif current is not None:
                current.cancel()

    async def step(coro: Coroutine[Any, Any, Any]) -> bool:
        """Run `coro` as the current step; False if a second interrupt cancelled it."""
        nonlocal current
        current = loop.create_task(coro)
        try:
            await current
        except asyncio.CancelledError:
            if interrupts >= 2 and current.cancelled():
                return False
            raise
        return True

    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal)
    try:
        if prepare is not None:
            if not await step(prepare()) or interrupts:
                return True
            preparing = False
        if not await step(sup.start()):
            return True
        started = True
        if interrupts:
            await sup.shutdown()
        elif until_idle:
            await _until_idle(sup)
        await sup.wait_closed()  # raises what made the supervisor give up, if anything
        return interrupts >= 2
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _until_idle(sup: Supervisor) -> None:
    idle = asyncio.ensure_future(sup.wait_until_idle())
    closed = asyncio.ensure_future(sup.wait_closed())
    try:
        await asyncio.wait({idle, closed}, return_when=asyncio.FIRST_COMPLETED)
        await sup.shutdown()  # at once if idle; waits for a shutdown already under way
        if idle.done() and not idle.cancelled() and idle.exception() is not None:
            await sup.wait_closed()  # what made the supervisor give up comes first
            raise idle.exception()  # type: ignore[misc]
    finally:
        for task in (idle, closed):
            task.cancel()
        await asyncio.gather(idle, closed, return_exceptions=True)
