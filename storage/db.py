"""Engine and session factory; SQLite gets WAL, foreign keys and a busy timeout.

``is_unavailable(exc)`` is the one place that tells a lost or busy database (PostgreSQL
restarting, a dropped connection, SQLite busy or locked) from any other error: callers that
meet it wait for the database (``Database.wait_available``) and try again instead of failing.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import asyncpg
from sqlalchemy import event, exc, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger(__name__)

# SQLite result codes (``sqlite3.Error.sqlite_errorname``) that pass: another writer holds the
# lock, or the file or disk is away for now. Anything else (no such table, …) is a real error.
_SQLITE_TRANSIENT = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR")
_SQLITE_TRANSIENT_SAID = (
    "database is locked",
    "database table is locked",
    "unable to open database file",
    "disk I/O error",
)
# PostgreSQL SQLSTATEs of a server that is away: class 08 (connection exception), admin or crash
# shutdown, "the database system is starting up / shutting down", too many connections.
_PG_TRANSIENT = ("57P01", "57P02", "57P03", "53300")
# Seconds: the longest pause between two looks at a lost database; connecting to PostgreSQL.
RETRY_CAP = 2.0
CONNECT_TIMEOUT = 10.0
_NET_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EHOSTDOWN,
    errno.EPIPE,
}


def _causes(error: BaseException) -> list[BaseException]:
    """The error, then what it wraps (SQLAlchemy's ``.orig``) or was raised from, and so on."""
    chain: list[BaseException] = []
    e: BaseException | None = error
    while e is not None and len(chain) < 20 and not any(e is c for c in chain):
        chain.append(e)
        orig = getattr(e, "orig", None)
        e = orig if isinstance(orig, BaseException) else e.__cause__
    return chain


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot be reached or is busy right now (so waiting
    and trying again will do), rather than that the statement or the data is wrong."""
    for e in _causes(error):
        if isinstance(e, aiohttp.ClientError):
            return False  # the homeserver's connection, not the database's
        if isinstance(e, exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, exc.TimeoutError | exc.DisconnectionError):
            return True  # no pooled connection came free / a connection was found dead
        if isinstance(e, sqlite3.Error):
            name = getattr(e, "sqlite_errorname", None)
            if name is not None and name.startswith(_SQLITE_TRANSIENT):
                return True
            if name is None and str(e).startswith(_SQLITE_TRANSIENT_SAID):
                return True  # raised without a result code (by aiosqlite, or by hand)
        elif isinstance(e, asyncpg.PostgresError):
            state = getattr(e, "sqlstate", "") or ""
            if state.startswith("08") or state in _PG_TRANSIENT:
                return True
        elif isinstance(e, asyncpg.InterfaceError):
            if "closed" in str(e):  # "connection is closed", "... was closed in the middle ..."
                return True
        elif isinstance(e, asyncpg.InternalClientError):
            return True  # the driver lost track of a connection cut mid-operation (see _broken)
        elif isinstance(e, ConnectionError | TimeoutError | socket.gaierror):
            return True  # connecting: refused, reset, timed out, the host unknown for now
        elif isinstance(e, OSError) and e.errno in _NET_ERRNOS:
            return True
    return False


def _broken(error: BaseException) -> bool:
    """Whether ``error`` leaves its PostgreSQL connection unusable, so it must not go back to
    the pool. SQLAlchemy sees most of these itself; not an asyncpg ``InternalClientError``
    ("cannot switch to state …; another operation is in progress", when the server cut the
    connection mid-operation), after which a pooled connection can hang the next query."""
    for e in _causes(error):
        if isinstance(e, asyncpg.InternalClientError | ConnectionError):
            return True
        if isinstance(e, asyncpg.InterfaceError) and "closed" in str(e):
            return True
        if isinstance(e, asyncpg.PostgresError):
            state = getattr(e, "sqlstate", "") or ""
            if state.startswith("08") or state in ("57P01", "57P02", "57P03"):
                return True
    return False


def _drop_broken_connections(context: ExceptionContext) -> None:
    if not context.is_disconnect and _broken(context.original_exception):
        context.is_disconnect = True  # invalidated: the pool connects afresh


def describe(error: BaseException) -> str:
    """One line naming the innermost cause (what the driver or the server said), for a log
    line without a traceback."""
    inner = _causes(error)[-1]
    said = " ".join(str(inner).split()) or "(no message)"
    return f"{type(inner).__name__}: {said[:200]}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        event.listen(engine.sync_engine, "handle_error", _drop_broken_connections)
    return engine


# One transaction's session, as handlers pass it to storage functions (they write no SQL).
Session = AsyncSession


async def upsert_insert(session: AsyncSession, table: Any) -> Any:
    """The dialect's INSERT (with ``on_conflict_do_*``) for the session's backend."""
    dialect = (await session.connection()).dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


# Called with a committed session's ``info`` (e.g. the rooms it queued messages for).
CommitListener = Callable[[dict[str, Any]], None]


class Database:
    """Owns the engine; hands out sessions and transactions."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        if not url.startswith("sqlite"):
            # A server restart leaves the pool full of dead connections: test each one as it is
            # checked out (and reconnect) rather than fail the first statement on it.
            engine_kwargs.setdefault("pool_pre_ping", True)
            # A server half up (or gone without a word) must not hold a connect for asyncpg's
            # default 60 s: fail it, and the caller waits and tries again.
            engine_kwargs.setdefault("connect_args", {"timeout": CONNECT_TIMEOUT})
        self.engine = create_engine(url, **engine_kwargs)
        self._probe: asyncio.Task[None] | None = None
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        # Told after every commit, whoever opened the transaction: the sender learns of every
        # queued room and the scheduler of every new job, with no caller passing them on.
        self.after_commit: list[CommitListener] = []

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessionmaker() as session:
            async with session.begin():
                yield session
            info = dict(session.info)
        if info:
            for listener in self.after_commit:
                listener(info)

    async def ping(self) -> None:
        """One round trip; raises what the database raises."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def wait_available(
        self, stopping: asyncio.Event | None = None, *, limit: float | None = None
    ) -> bool:
        """Wait until the database answers (at once when it does). Everyone waiting at the same
        time shares one probe, which tries at 0.5 s, 1 s, then every ``RETRY_CAP`` seconds.

        False when ``stopping`` was set first or ``limit`` seconds passed; an error that is not
        :func:`is_unavailable` is raised."""
        probe = self._probe
        if probe is None or probe.done():
            probe = self._probe = asyncio.create_task(self._probe_until_up(), name="db-probe")
            probe.add_done_callback(lambda t: t.cancelled() or t.exception())  # seen by waiters
        waits: set[asyncio.Task[Any]] = {probe}
        stop = asyncio.create_task(stopping.wait()) if stopping is not None else None
        if stop is not None:
            waits.add(stop)
        try:
            done, _ = await asyncio.wait(waits, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if stop is not None:
                stop.cancel()
        if probe in done:
            probe.result()
            return True
        if stop is None or stop not in done:
            log.error("the database did not answer for %.0f s", limit or 0)
        return False

    async def _probe_until_up(self) -> None:
        start = time.monotonic()
        delay = 0.5
        failed = False
        while True:
            try:
                await self.ping()
            except Exception as error:
                if not is_unavailable(error):
                    raise
                log.info("database unavailable (%s); again in %.1f s", describe(error), delay)
                failed = True
            else:
                if failed:
                    log.warning("database is back after %.1f s", time.monotonic() - start)
                return
            await asyncio.sleep(delay)
            delay = min(RETRY_CAP, delay * 2)

    async def upgrade(self) -> None:
        from storage.migrate import upgrade

        await upgrade(self.engine)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        await self.engine.dispose()
