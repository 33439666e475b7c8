"""/contacts (/通讯录), the example of a command that sends a file to the enterprise rooms in
the sender's reach: who may, which rooms get a card, what the card says (no homeserver)."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

import handlers.contacts.cards
from storage.db import Database
from storage.models import OutboxFile, OutboxMessage
from tests.dispatch_harness import DispatchHarness, deliver_pending
from tests.notice_seed import PEOPLE, seed_notice_grid
from tests.roster_seed import set_room

U = {k: f"@{k.replace('_', '-')}:localhost" for k in PEOPLE}


def ent_room(key: str) -> str:
    return f"!ent-{key}:localhost"


async def _world(db: Database) -> DispatchHarness:
    grid = await seed_notice_grid(db, U)
    for key in ("A", "B", "D", "E"):  # C has no room
        await set_room(db, ent_room(key), "enterprise_room", enterprise_id=grid.enterprises[key])
    for key in ("l2_chief_f", "member_f", "chief_a"):
        await set_room(db, f"!dm-{key}:localhost", "direct")
    return DispatchHarness(db, [handlers.contacts.cards])


async def _cards(db: Database) -> dict[str, list[list[str]]]:
    """Room → the rows of the CSV card sent there (after the pretend sender sent everything)."""
    await deliver_pending(db)
    out: dict[str, list[list[str]]] = {}
    async with db.transaction() as s:
        for msg in await s.scalars(select(OutboxMessage).where(OutboxMessage.file_id.is_not(None))):
            file = await s.get(OutboxFile, msg.file_id)
            assert file is not None and msg.content["url"] == file.url
            text = file.data.decode("utf-8")
            assert text.startswith("\ufeff"), "a BOM, so that Excel reads the Chinese"
            out[msg.room_id] = list(csv.reader(io.StringIO(text[1:])))
    return out


async def test_a_level2_chief_sends_each_enterprise_of_the_grid_its_own_card(
    db: Database,
) -> None:
    h = await _world(db)
    out = await h.say(U["l2_chief_f"], "/通讯录", "!dm-l2_chief_f:localhost")
    assert out[-1].startswith("已向 2 家企业群发送网格通讯录")
    assert "萍乡顺达运输公司" in out[-1], "C has no room: named as not sent"
    cards = await _cards(db)
    assert set(cards) == {ent_room("A"), ent_room("B")}, "only the freight grid's rooms"
    a = cards[ent_room("A")]
    assert a[0] == ["角色", "姓名", "Matrix ID"]
    assert ["企业负责人 / 企业网格员", "刘强", U["chief_a"]] in a
    assert ["企业负责人 / 企业网格员", "何静", U["member_a"]] in a
    assert [r[1] for r in a if r[0] == "二级网格员"] == ["张敏"]
    assert [r[1] for r in a if r[0] == "二级网格长"] == ["李卫东"]
    assert "王建国" in [r[1] for r in a], "the level-1 chief is on the card"
    assert "钱进" not in {r[1] for r in a}, "nobody of another enterprise"


async def test_a_member_reaches_only_the_enterprises_served(db: Database) -> None:
    h = await _world(db)
    await h.say(U["member_f"], "/contacts", "!dm-member_f:localhost")
    assert set(await _cards(db)) == {ent_room("A"), ent_room("B")}


async def test_enterprise_staff_may_not_send_cards(db: Database) -> None:
    h = await _world(db)
    out = await h.say(U["chief_a"], "/通讯录", "!dm-chief_a:localhost")
    assert len(out) == 1 and "无权" in out[0]
    assert await _cards(db) == {}
