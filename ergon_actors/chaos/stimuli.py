"""What a chaos run does to flows from outside: the signals and cancellations a module declares,
and the poison flows it declares (flows whose step kills its worker, to be quarantined).

    def chaos_signals(flows: list) -> dict[str, object]: ...   # signal name -> payload
    def chaos_cancels(flows: list) -> list: ...                # flows to cancel once they wait
    def chaos_poison(flows: list) -> list: ...                 # flows that kill their worker

Both are optional functions of the module that builds the flows. The run sends every declared
signal once, at a seeded moment of the fault phase (about half of them right after a fault
hits, while its victim is down), and every declared signal that is still unsent when the fault
phase ends. It cancels each declared flow once that flow is suspended waiting for a signal, so
its journal is the same in every run. The fault-free run gets the same signals at its start and
the same cancellations, and does not run the poison flows (they would kill it).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
import time
from contextlib import suppress
from dataclasses import dataclass
from collections.abc import Callable, Mapping

from .. import codec
from ..errors import ConfigError, ErgonError
from ..storage.base import LogBase

__all__ = ["Stimuli", "declared", "Sender", "SIGNALS", "CANCELS", "POISON", "waits_for_signal"]

log = logging.getLogger(__name__)

SIGNALS = "chaos_signals"
CANCELS = "chaos_cancels"
POISON = "chaos_poison"
AFTER_FAULT = 0.5  # the share of signals sent right after a fault rather than at their moment


@dataclass(frozen=True, slots=True)
class Stimuli:
    """The signals (name -> encoded payload), the flows to cancel and the poison flows (indexes
    into the flows)."""

    signals: Mapping[str, bytes]
    cancels: tuple[int, ...]
    poison: tuple[int, ...] = ()


def declared(module: str, flows: list[object]) -> Stimuli:
    """What `module` declares with chaos_signals(flows), chaos_cancels(flows) and
    chaos_poison(flows), if it does.

    Raises:
        ConfigError: a declaration of the wrong shape, a payload that does not encode, or a
            flow to cancel or poison flow that is not one of `flows`.
    """
    found = importlib.import_module(module)
    signals: dict[str, bytes] = {}
    declare = getattr(found, SIGNALS, None)
    if callable(declare):
        named = declare(flows)
        if not isinstance(named, Mapping) or not all(isinstance(k, str) for k in named):
            raise ConfigError(f"{module}.{SIGNALS}(flows) must return a dict of signal name -> payload")
        for name, payload in named.items():
            try:
                signals[name] = codec.encode(payload)
            except ErgonError as exc:
                raise ConfigError(f"{module}.{SIGNALS}: the payload of signal {name!r} does not encode: "
                                  f"{exc}") from exc
    return Stimuli(signals, _chosen(found, module, CANCELS, flows), _chosen(found, module, POISON, flows))


def _chosen(found: object, module: str, name: str, flows: list[object]) -> tuple[int, ...]:
    """The indexes of the flows the module's function `name` picks from `flows` (none without one)."""
    choose = getattr(found, name, None)
    if not callable(choose):
        return ()
    index = {id(flow): i for i, flow in enumerate(flows)}
    chosen: set[int] = set()
    for flow in choose(flows):
        if id(flow) not in index:
            raise ConfigError(f"{module}.{name}(flows) must return flows from the list it is given")
        chosen.add(index[id(flow)])
    return tuple(sorted(chosen))


def waits_for_signal(status: str, waiting_on: str | None) -> bool:
    """True when a flow is suspended waiting for a signal: the moment a declared cancel goes in."""
    return status == "SUSPENDED" and (waiting_on or "").startswith("signal:")


class Sender:
    """Sends the run's signals and cancellations into the store while faults hit the supervisor.

    `faults` tells how many faults were injected so far; a signal drawn to follow a fault is
    sent at the first one after its moment. Store errors (Redis killed) are retried next tick.
    """

    def __init__(self, store: LogBase, stimuli: Stimuli, flow_ids: list[str], seed: int, spread: float,
                 faults: Callable[[], int]) -> None:
        rng = random.Random(f"{seed}:signals")
        self.store = store
        self.faults = faults
        self.payloads = dict(stimuli.signals)
        self.plan = {name: (rng.uniform(0.0, spread), rng.random() < AFTER_FAULT) for name in sorted(self.payloads)}
        self.to_cancel = {flow_ids[i] for i in stimuli.cancels}
        self.sent: dict[str, float] = {}   # name -> time.time() of its first try, once it went in
        self.after_fault = 0
        self.cancelled = 0
        self._armed: dict[str, int] = {}  # name -> fault count when its moment came
        self._first: dict[str, float] = {}  # name -> time.time() of its first try
        self._follows: set[str] = set()     # names sent right after a fault

    async def run(self, stop: asyncio.Event, faults_over: asyncio.Event, every: float = 0.05) -> None:
        """Send and cancel until `stop`; once `faults_over` is set, send whatever is left at once."""
        started = time.monotonic()
        while not stop.is_set():
            await self._signals(time.monotonic() - started, faults_over.is_set())
            await self._cancels()
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    async def _signals(self, elapsed: float, all_now: bool) -> None:
        for name, (at, after_fault) in self.plan.items():
            if name in self.sent:
                continue
            if name not in self._first:  # its moment has not come yet, or it is waiting for a fault
                if elapsed < at and not all_now:
                    continue
                if after_fault and not all_now and self._armed.setdefault(name, self.faults()) == self.faults():
                    continue
                self._first[name] = time.time()  # a send that fails may still have committed
                if after_fault and not all_now:
                    self._follows.add(name)
            try:
                await self.store.send_signal(name, self.payloads[name])
            except ErgonError as exc:
                log.debug("chaos could not send signal %s yet: %s", name, exc)
                continue
            self.sent[name] = self._first[name]
            self.after_fault += name in self._follows

    async def _cancels(self) -> None:
        if not self.to_cancel:
            return
        try:
            waiting = await self.store.list_flows("SUSPENDED", limit=100_000)
        except ErgonError as exc:
            log.debug("chaos could not list flows: %s", exc)
            return
        for flow in waiting:
            if flow.flow_id in self.to_cancel and waits_for_signal(flow.status, flow.waiting_on):
                try:
                    await self.store.cancel_flow(flow.flow_id)
                except ErgonError as exc:
                    log.debug("chaos could not cancel %s yet: %s", flow.flow_id, exc)
                    continue
                self.to_cancel.discard(flow.flow_id)
                self.cancelled += 1
