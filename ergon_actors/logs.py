"""Logging set-up for the processes ergon_actors starts itself (the command line and its actors).

The library never calls this: an application embedding ergon_actors configures its own logging.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, UTC
from typing import IO

__all__ = ["configure", "JsonFormatter", "LEVELS", "FORMATS"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, process, actor;
    exception (its traceback) when there is one."""

    def __init__(self, actor: str | None = None) -> None:
        super().__init__()
        self.actor = actor

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage(),
                 "pid": record.process}
        if self.actor is not None:
            entry["actor"] = self.actor
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str | int = "WARNING", fmt: str = "text", *, actor: str | None = None,
              stream: IO[str] | None = None) -> None:
    """Log ergon_actors' records at `level` and above, every other library's at WARNING and above.

    Args:
        level: a level name or number for the ergon_actors loggers.
        fmt: "text" (one readable line per record) or "json" (one JSON object per line).
        actor: the actor's name, shown on each line of an actor process.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(actor))
    else:
        where = f" [{actor} pid={os.getpid()}]" if actor else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # third-party loggers (asyncio, redis, ...) stay quiet
    logging.getLogger("ergon_actors").setLevel(level)
