"""Human ids like N-2026-0001, V-2026-0001, H-2026-0001: a sequence per prefix and year.

One atomic upsert per id (INSERT … ON CONFLICT DO UPDATE … RETURNING): PostgreSQL row-locks the
counter until commit and SQLite has one writer, so concurrent transactions never share a number,
and a rolled-back transaction gives its number back.
"""

from __future__ import annotations

import unicodedata

from sqlalchemy import Integer, String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import upsert_insert
from storage.models import Base


class CodeCounter(Base):
    """The last number handed out per prefix and year."""

    __tablename__ = "code_counters"

    prefix: Mapped[str] = mapped_column(String(4), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer)


# Zero-width characters phones and copy-paste leave in text (as bot.words drops them too).
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def typed(text: str) -> str:
    """An id as typed on a phone, ready to match: full-width forms made half-width (NFKC:
    "Ｈ－２０２６－１" is "H-2026-1"), zero-width characters dropped, spaces trimmed."""
    return unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).strip()


def format_code(prefix: str, year: int, number: int) -> str:
    return f"{prefix}-{year}-{number:04d}"


async def next_code(session: AsyncSession, prefix: str, year: int) -> str:
    """Allocate the next id of ``prefix`` in ``year`` inside the caller's transaction."""
    table = CodeCounter.__table__
    stmt = (
        (await upsert_insert(session, table))
        .values(prefix=prefix, year=year, last=1)
        .on_conflict_do_update(index_elements=["prefix", "year"], set_={"last": table.c.last + 1})
        .returning(table.c.last)
    )
    number = (await session.execute(stmt)).scalar_one()
    return format_code(prefix, year, int(number))
