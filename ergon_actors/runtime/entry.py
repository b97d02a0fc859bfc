"""The process entry of an actor: `python -m ergon_actors.runtime.entry ROLE NAME SPEC_PATH`.

SIGINT is ignored before anything else: the supervisor owns Ctrl-C. The supervisor starts
actors with SIGINT blocked, so one that arrived while Python imported the package is still
pending here, and ignoring it discards it. The spec (ActorSpec, which holds the store URL) is
read from the 0600 file SPEC_PATH, never from the command line; ROLE and NAME are there only
for `ps`.
"""

from __future__ import annotations

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

import asyncio  # noqa: E402  (after the SIGINT guard, on purpose)
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from .. import logs  # noqa: E402
from ..errors import ConfigError, StoreError  # noqa: E402
from .actor import EXIT_CRASHED, EXIT_STORE, Actor, ActorSpec  # noqa: E402
from .transport import die_with_parent  # noqa: E402

__all__ = ["main", "actor_class"]

log = logging.getLogger(__name__)


def actor_class(role: str) -> type[Actor]:
    """The Actor subclass that plays `role` (imported here only: each process loads its own)."""
    if role == "journal":
        from .journal import Journal
        return Journal
    if role == "worker":
        from .worker import WorkerActor
        return WorkerActor
    raise ConfigError(f"unknown actor role {role!r}")


def main(argv: list[str]) -> int:
    _role, name, spec_path = argv
    spec = ActorSpec.read(spec_path)
    die_with_parent(spec.parent_pid)
    sys.path[:] = list(spec.sys_path) + [p for p in sys.path if p not in spec.sys_path]
    # as the command line that started the supervisor logs: its level, its format (text or json)
    logs.configure(spec.log_level, os.environ.get("ERGON_LOG_FORMAT", "text"), actor=name)
    try:
        return asyncio.run(actor_class(spec.role)(spec).run())
    except StoreError as exc:  # from the journal's commit: not unavailable, so broken
        log.error("actor %s stopped: its store is broken: %s: %s", name, type(exc).__name__, exc)
        return EXIT_STORE
    except Exception:
        log.exception("actor %s crashed", name)
        return EXIT_CRASHED


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
