"""What the bot knows of each room: its join point and what the room is for."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import upsert_insert
from storage.models import Enterprise, Grid, RoomInfo


async def get(session: AsyncSession, room_id: str) -> RoomInfo | None:
    return await session.get(RoomInfo, room_id)


async def get_many(session: AsyncSession, room_ids: list[str]) -> dict[str, RoomInfo]:
    if not room_ids:
        return {}
    rows = await session.scalars(select(RoomInfo).where(RoomInfo.room_id.in_(room_ids)))
    return {r.room_id: r for r in rows}


async def named(session: AsyncSession, room_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """(kind, the enterprise's or grid's name) of each room, to tell people which room is
    meant; unknown rooms are ("other", None)."""
    infos = await get_many(session, room_ids)
    ents = {i.enterprise_id for i in infos.values() if i.enterprise_id is not None}
    grids = {i.grid_id for i in infos.values() if i.grid_id is not None}
    ent_names: dict[int, str] = {}
    grid_names: dict[int, str] = {}
    if ents:
        rows = await session.execute(
            select(Enterprise.id, Enterprise.name).where(Enterprise.id.in_(ents))
        )
        ent_names = {eid: name for eid, name in rows}
    if grids:
        rows = await session.execute(select(Grid.id, Grid.name).where(Grid.id.in_(grids)))
        grid_names = {gid: name for gid, name in rows}
    out: dict[str, tuple[str, str | None]] = {}
    for room_id in room_ids:
        info = infos.get(room_id)
        if info is None:
            out[room_id] = ("other", None)
        elif info.enterprise_id is not None:
            out[room_id] = (info.kind, ent_names.get(info.enterprise_id))
        else:
            out[room_id] = (info.kind, grid_names.get(info.grid_id) if info.grid_id else None)
    return out


async def record_join(
    session: AsyncSession, room_id: str, ts: int, event_id: str | None, *, kind: str | None = None
) -> RoomInfo:
    """Remember the bot's latest join; a later join (after leaving) moves the point forward."""
    await _ensure(session, room_id, kind or "other")
    info = await session.get(RoomInfo, room_id, populate_existing=True)
    assert info is not None
    if info.joined_ts is None or ts >= info.joined_ts:
        info.joined_ts = ts
        info.join_event_id = event_id
        info.left = False
    if kind and info.kind == "other":
        info.kind = kind
    return info


async def _ensure(session: AsyncSession, room_id: str, kind: str) -> None:
    """Insert the room's row unless it exists: provisioning may write it at the same moment."""
    insert = await upsert_insert(session, RoomInfo)
    await session.execute(
        insert.values(room_id=room_id, kind=kind, left=False).on_conflict_do_nothing()
    )


async def record_leave(session: AsyncSession, room_id: str) -> None:
    info = await session.get(RoomInfo, room_id)
    if info is not None:
        info.left = True
