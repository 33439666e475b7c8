"""Engine and session factory; SQLite gets WAL, foreign keys and a busy timeout."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


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
        self.engine = create_engine(url, **engine_kwargs)
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

    async def upgrade(self) -> None:
        from storage.migrate import upgrade

        await upgrade(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()
