"""The journal actor: the only writer of the store.

Every request that has arrived when the previous commit ends joins the next one: one
transaction (group commit), then every answer. An answer means the write is committed. A store
whose commit is a round trip to a server that applies calls in the order they were made (Redis:
`LogBase.pipelined`) may have IN_FLIGHT batches under way: the journal reads and sends the next
batch while the previous one's round trip lasts, and answers each batch once its own commit
returned. A store that is unavailable holds the batches until it recovers (a batch is sent again
only after the batches before it were applied); a broken one stops the journal (exit 74), and the
supervisor gives up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import zmq
import zmq.asyncio

from ..core.backoff import Backoff, FailureLog
from ..errors import ErgonError, FencedError, InvalidCommandError, ProtocolError, StoreError, StoreUnavailableError
from ..storage import open_store
from ..storage.base import WAKING, LogBase
from ..storage.commands import ClaimFlows, Command, NextDue, pack, unpack
from ..storage.schedules import fire_due, prune_all
from .actor import Actor
from .messages import JournalStats, Wake, encode
from .stats import BATCH_COMMANDS, COMMIT_SECONDS, Histogram
from .transport import make_socket

__all__ = ["Journal", "COMMAND_TYPES"]

log = logging.getLogger(__name__)

COMMAND_TYPES = tuple(Command.__args__)
MAX_MESSAGES = 4096  # messages folded into one transaction at most
UPKEEP_POLL = 1.0  # the longest the journal waits before it looks at the schedules again
PRUNE_EVERY = 60.0  # how often the journal deletes the flows past the retention setting (at most)
POLLS = (ClaimFlows, NextDue)  # what idle workers send: they do not make the journal busy
IN_FLIGHT = 2  # batches under way at once on a pipelined store (3 measured no faster)
CLAIMER_QUIET = 60.0  # a claimer that neither claimed nor asked NextDue this long is forgotten
Batch = list[tuple[bytes, list[tuple[Any, Any]]]]  # (client identity, [(request id, command)])


class Journal(Actor):
    """Receives command batches on a ROUTER socket and commits them together."""

    role = "journal"
    store: LogBase
    sock: zmq.asyncio.Socket

    async def on_start(self) -> None:
        settings = self.settings
        # the journal's loop does nothing else while it commits: commit on it, without thread hops
        store = await open_store(settings.store, synchronous=settings.synchronous, at_once=True)
        self.resources.push_async_callback(store.close)
        self.store = store if self.spec.store_wrapper is None else self.spec.store_wrapper.apply(store)
        self.stats = {"commits": 0, "commands": 0, "fenced": 0, "largest": 0}
        self.active = 0  # commands other than idle workers' polls since the last beat
        self.commit_seconds = Histogram(COMMIT_SECONDS)
        self.batch_commands = Histogram(BATCH_COMMANDS)
        # clients that claim flows: when they last claimed or asked NextDue, and their flow types
        self.claimers: dict[bytes, tuple[float, tuple[str, ...] | None]] = {}
        self.failing_since: float | None = None
        self.store_error = ""
        self.outage = FailureLog(log, "journal commit")
        self.pipelined = IN_FLIGHT > 1 and self.store.pipelined
        self.in_flight: list[asyncio.Task[None]] = []  # commits under way, oldest first (pipelined only)
        self.failure: BaseException | None = None  # what a commit under way raised: the journal stops
        self.sock = self.inbox = make_socket(self.ctx, zmq.ROUTER, settings.high_water_mark,
                                             max_message_size=settings.max_message_size)
        self.sock.bind(self.spec.journal)
        # The same socket without zmq.asyncio's futures: the journal only reads what has arrived
        # (the actor's loop watches the socket), and a ROUTER never blocks a send (it drops for a
        # full or gone peer), so neither needs a future per message.
        self.raw: zmq.Socket[bytes] = zmq.Socket.shadow(self.sock.underlying)
        upkeep = asyncio.get_running_loop().create_task(self._upkeep())
        self.resources.callback(upkeep.cancel)

    async def on_message(self) -> None:
        if not self.pipelined:
            await self._commit(self._collect())
            return
        while len(self.in_flight) >= IN_FLIGHT:  # the oldest first: its answers free its clients
            await asyncio.wait(self.in_flight[:1])
        self._check()
        batch = self._collect()
        if batch:
            task = asyncio.get_running_loop().create_task(
                self._commit(batch, self.in_flight[-1] if self.in_flight else None))
            self.in_flight.append(task)
            task.add_done_callback(self._committed)

    def _committed(self, task: asyncio.Task[None]) -> None:
        """Forget a commit that ended; one that raised stops the journal."""
        self.in_flight.remove(task)
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()
            self.stop(0.0)

    def _check(self) -> None:
        """Raise what a commit under way raised (a broken store: exit 74)."""
        if self.failure is not None:
            raise self.failure

    async def on_stop(self, grace: float) -> int:
        """Let the commits under way end and answer (however long a store outage lasts)."""
        while self.in_flight:
            await asyncio.wait(list(self.in_flight))
        self._check()
        return 0

    def busy(self) -> bool:
        """Busy if it committed anything but idle workers' polls since the last beat."""
        active, self.active = self.active, 0
        return active > 0

    def statistics(self) -> JournalStats:
        s = self.stats
        return JournalStats(s["commits"], s["commands"], s["largest"], s["fenced"], self.drops.total,
                            self.failing_since, self.store_error, self.commit_seconds.buckets(),
                            self.batch_commands.buckets(), len(self.in_flight))

    def _collect(self) -> Batch:
        batch: Batch = []
        until = time.monotonic() + self.settings.heartbeat_interval  # slow messages must not delay heartbeats
        while len(batch) < MAX_MESSAGES and time.monotonic() < until:
            try:
                identity, *frames = self.raw.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                if len(frames) != 1:
                    raise ProtocolError(f"expected 1 frame, got {len(frames)}")
                kind, body = unpack(frames[0])
                if kind != "req" or not isinstance(body, list):
                    raise ProtocolError(f"unexpected message kind {kind!r}")
                requests = [(rid, c) for rid, c in body]
            except (ProtocolError, TypeError, ValueError) as exc:
                self.drops.drop(identity.hex(), exc)
                continue
            for _, command in requests:
                if type(command) is ProtocolError:  # answered with this error, and counted
                    self.drops.drop(identity.hex(), command)
            batch.append((identity, requests))
        return batch

    async def _commit(self, batch: Batch, after: asyncio.Task[None] | None = None) -> None:
        """Commit a batch and answer its clients; `after`: the batch sent before it, still under way."""
        commands = [c for _, requests in batch for _, c in requests if isinstance(c, COMMAND_TYPES)]
        if not commands and not batch:
            return
        started = time.perf_counter()
        results = iter(await self._execute(commands, after))
        self.commit_seconds.observe(time.perf_counter() - started)
        self.batch_commands.observe(len(commands))
        self.stats["commits"] += 1
        self.stats["commands"] += len(commands)
        self.active += sum(1 for c in commands if not isinstance(c, POLLS))
        self.stats["largest"] = max(self.stats["largest"], len(commands))
        for identity, requests in batch:
            answers = []
            for rid, command in requests:
                if isinstance(command, COMMAND_TYPES):
                    result = next(results)
                    if isinstance(result, FencedError):
                        self.stats["fenced"] += 1
                        log.info("journal refused a write: %s", result)
                elif type(command) is ProtocolError:  # a command whose fields were malformed
                    result = command
                else:
                    result = ProtocolError(f"not a journal command: {type(command).__name__}")
                answers.append((rid, result))
            self.raw.send_multipart((identity, pack("rep", answers)))
        self._wake_claimers(batch, commands)
        if self.pipelined:  # answered from a task of its own: a send can take the loop's wake-up
            self.rouse()

    def _wake_claimers(self, batch: Batch, commands: list[Command]) -> None:
        """Tell every claiming client that runnable work was just committed, so it claims now
        instead of at its next poll."""
        now = time.monotonic()
        for identity, requests in batch:
            for _, c in requests:
                if isinstance(c, POLLS):
                    self.claimers[identity] = (now, c.flow_types)
        if any(isinstance(c, WAKING) for c in commands):
            self._wake_all()

    def _wake_all(self, of: set[tuple[str, ...] | None] | None = None) -> None:
        """Tell every client that claimed lately (only those whose flow types are in `of`, if
        given) to claim now."""
        now = time.monotonic()
        wake = encode(Wake())
        for identity, (seen, types) in list(self.claimers.items()):
            if now - seen > CLAIMER_QUIET:  # gone quiet: a dead or restarted client
                del self.claimers[identity]
            elif of is None or types in of:
                self.raw.send_multipart((identity, wake))
        # from _upkeep this runs while the loop waits on the socket, and a send can take the
        # wake-up of a message arriving meanwhile
        self.rouse()

    async def _wake_due_claimers(self) -> None:
        """Ask the store whether a flow is due now for each set of flow types the claimers serve,
        and wake those claimers if one is: idle workers ask the store nothing themselves until
        then, also for work that other processes write or timers that come due."""
        kinds = list({types for _, types in self.claimers.values()})
        if not kinds:
            return
        now = time.time()
        results = await self._execute([NextDue(types) for types in kinds])
        self._wake_all({types for types, at in zip(kinds, results, strict=True) if isinstance(at, float) and at <= now})

    async def _upkeep(self) -> None:
        """Start the flows of the cron schedules' due ticks, and delete flows past the retention
        setting, for as long as the journal runs. Every journal on the store does so: a tick
        starts one flow however many fire it (storage.schedules)."""
        failures = FailureLog(log, "schedules and retention")
        prune_at = time.monotonic()
        while True:
            delay = UPKEEP_POLL
            try:
                await self._wake_due_claimers()
                created, next_at = await fire_due(self._execute)
                if created:
                    log.info("cron schedules started %d flows: %s", len(created), ", ".join(created))
                    self._wake_all()
                if next_at is not None:
                    delay = min(UPKEEP_POLL, max(0.0, next_at - time.time()) + 0.001)
                retention = self.settings.retention
                if retention and time.monotonic() >= prune_at:
                    prune_at = time.monotonic() + min(PRUNE_EVERY, max(UPKEEP_POLL, retention / 2))
                    pruned = await prune_all(self._execute, time.time() - retention)
                    if pruned:
                        log.info("deleted %d flows that ended more than %gs ago", pruned, retention)
                failures.recovered()
            except Exception as exc:  # a broken store is the commit path's to report (exit 74)
                failures.failed(exc)
            await asyncio.sleep(delay)

    async def _execute(self, commands: list[Command], after: asyncio.Task[None] | None = None) -> list[object]:
        """The commands' results, once the store took them: a batch the store cannot take right
        now (StoreUnavailableError) is held and retried with jittered backoff until it can;
        clients wait, and nothing is answered as a failure. A batch sent after another one
        (`after`, still under way) is sent again only once that one was applied, so the store
        applies them in the order they were read.

        Raises:
            StoreError: the store is broken (a corrupt file): the journal stops (exit 74).
        """
        backoff = Backoff(0.05, 2.0)
        while True:
            try:
                results = await self._apply(commands)
            except StoreUnavailableError as exc:
                # The actor's heartbeats go on meanwhile: a journal waiting for its store is not
                # hung, restarting it cannot help, and each failed restart would count toward the
                # restart intensity.
                self.outage.failed(exc)
                if self.failing_since is None:
                    self.failing_since = time.time()
                self.store_error = f"{type(exc).__name__}: {exc}"
                if after is not None and not after.done():
                    await asyncio.wait([after])  # it went through: so may this one, at once
                    after = None
                    continue
                await asyncio.sleep(backoff.next())
                continue
            if self.failing_since is not None:
                self.outage.recovered()
                self.failing_since, self.store_error = None, ""
            return results

    async def _apply(self, commands: list[Command]) -> list[object]:
        try:
            return await self.store.execute(commands)
        except StoreError:
            raise
        except Exception:
            log.exception("journal commit of %d commands failed; answering each alone", len(commands))
            return [await self._one(c) for c in commands]

    async def _one(self, command: Command) -> object:
        try:
            (result,) = await self.store.execute([command])
            return result
        except StoreError:
            raise
        except Exception as exc:  # about this command alone: only it fails
            return exc if isinstance(exc, ErgonError) else InvalidCommandError(type(command).__name__,
                                                                               f"{type(exc).__name__}: {exc}")
