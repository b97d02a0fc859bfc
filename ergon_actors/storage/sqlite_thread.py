"""Who runs a SQLite store's statements: a thread owning the connection (callers queue functions,
it runs them in order), or the caller's own event loop (inline)."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import StoreError

__all__ = ["ConnectionThread", "InlineConnection"]

T = TypeVar("T")
# (future, function) runs function(connection) and settles the future; (future, None) closes the
# connection and ends the thread; None (from the finalizer, nobody waiting) does the same.
_Job = tuple["asyncio.Future[Any]", Callable[[sqlite3.Connection], Any] | None] | None


class ConnectionThread:
    """One thread holding one sqlite3 connection; `run(fn)` calls `fn(connection)` on it.

    sqlite3 calls block, so they run off the event loop, and all on the thread that opened the
    connection. A whole function (a transaction of many statements) costs one hop to the thread
    and one back. The thread is a daemon, so a program that ends without closing its store still
    exits; SQLite rolls back a transaction cut short that way when the file is next opened. A
    ConnectionThread dropped without `close()` closes its connection and ends its thread.
    """

    def __init__(self, path: str) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._closing = False
        self._thread = threading.Thread(target=_serve, args=(path, self._jobs), daemon=True,
                                        name=f"ergon-sqlite {path}")
        self._thread.start()
        finalizer = weakref.finalize(self, self._jobs.put, None)
        finalizer.atexit = False  # at exit the daemon thread just stops with the process

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the thread after the functions queued before it.

        Raises:
            StoreError: close() was called.
            Exception: whatever `fn` raised; sqlite3.Error when the file cannot be opened.
        """
        if self._closing:
            raise StoreError("the SQLite connection is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((future, fn))
        return await future

    async def close(self) -> None:
        """Let the queued functions finish, then close the connection and end the thread."""
        if self._closing:
            return
        self._closing = True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._jobs.put((future, None))
        await future
        self._thread.join()  # it settled the future as its last act: this returns at once


class InlineConnection:
    """One sqlite3 connection used on the event loop's own thread: `run(fn)` calls `fn(connection)`
    at once, blocking the loop while it runs.

    For a process whose loop has nothing else to do while it commits (the journal): it saves the
    two thread hops per transaction a ConnectionThread costs. Work that arrives meanwhile waits
    in ZeroMQ's queues and joins the next transaction.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None
        self._closing = False

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """ConnectionThread.run, on this thread and at once; the connection opens at the first call."""
        return self.call(fn)

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)`, called now; the connection opens at the first call."""
        if self._closing:
            raise StoreError("the SQLite connection is closed")
        if self._db is None:
            self._db = sqlite3.connect(self._path, isolation_level=None)
        return fn(self._db)

    async def close(self) -> None:
        """Close the connection."""
        self._closing = True
        db, self._db = self._db, None
        if db is not None:
            db.close()


def _serve(path: str, jobs: queue.SimpleQueue[_Job]) -> None:
    """The thread's body: open the connection at the first job, run jobs until told to stop.

    It holds no reference to its ConnectionThread, so a dropped one can be finalized.
    """
    db: sqlite3.Connection | None = None
    while True:
        job = jobs.get()
        future, fn = job if job is not None else (None, None)
        result: object = None
        error: BaseException | None = None
        try:
            if fn is None:
                if db is not None:
                    db.close()
            else:
                if db is None:
                    db = sqlite3.connect(path, isolation_level=None)
                result = fn(db)
        except BaseException as exc:  # handed to the caller, whatever it is
            error = exc
        if future is not None:
            with contextlib.suppress(RuntimeError):  # its event loop is closed: nobody waits for the answer
                future.get_loop().call_soon_threadsafe(_settle, future, result, error)
        if fn is None:
            return
        # Drop this job before waiting for the next: a function may hold its store, which must
        # stay collectable while the thread waits.
        job = future = fn = result = error = None


def _settle(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled while its function ran
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
