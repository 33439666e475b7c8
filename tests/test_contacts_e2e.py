"""/通讯录 end to end on the real Synapse: a level-2 chief's command puts one contact card
(a CSV file) into each of the grid's enterprise rooms, once; the chief of an enterprise
downloads it and reads the people who serve it."""

from __future__ import annotations

import csv
import io
from typing import Any

from nio import AsyncClient

from tests.bot_harness import BotFactory
from tests.fixtures_synapse import MakeUser, NioClientFactory
from tests.matrix_helpers import send_text
from tests.notice_seed import seed_notice_grid
from tests.test_notices_e2e import FREIGHT_PEOPLE, _freight_rooms, from_bot, people


async def _files_from(client: AsyncClient, room: str, sender: str) -> list[dict[str, Any]]:
    resp = await client.room_messages(room, start="", limit=100, direction="b")
    return [
        e.source["content"]
        for e in resp.chunk
        if e.sender == sender and (e.source.get("content") or {}).get("msgtype") == "m.file"
    ]


async def test_each_enterprise_room_gets_its_card_once(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    c = await people(FREIGHT_PEOPLE, make_user, nio_client)
    bot = await gridbot()
    grid = await seed_notice_grid(bot.db, {k: v.user_id for k, v in c.items()})
    await bot.start()
    rooms = await _freight_rooms(bot, c, grid)
    chief, dm = c["l2_chief_f"], rooms["l2_chief_f"]

    command = await send_text(chief, dm, "/通讯录")
    said = await bot.messages_when_idle(chief, dm, events=[command])
    answers = [m for m in said if "通讯录" in m.body]  # (the bot's welcome came first)
    assert len(answers) == 1 and from_bot(bot, "已向 3 家企业群发送网格通讯录")(answers[0])

    for key, person in (("A", "chief_a"), ("B", "chief_b"), ("C", "chief_c")):
        (card,) = await _files_from(c[person], rooms[key], bot.user_id)
        assert card["filename"].endswith("-网格通讯录.csv") and card["url"].startswith("mxc://")
        data = (await c[person].download(mxc=card["url"])).body
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
        names = {r[1] for r in rows[1:]}
        assert "李卫东" in names and "王建国" in names  # level-2 and level-1 chiefs
        if key == "A":
            assert {"刘强", "何静", "张敏"} <= names and "吴勇" not in names
