"""Reports end to end on the real Synapse: /报表 月 in the level-1 room brings back the summary
and the files (downloaded and opened here), and the monthly report posts itself on the first
working day of the month on a controlled clock. One bot and one county for the whole module."""

from __future__ import annotations

import io
from datetime import datetime
from zoneinfo import ZoneInfo

import openpyxl
import time_machine
from nio import AsyncClient, DownloadResponse, MessageDirection, RoomMessagesResponse

from tests.bot_harness import BotFactory, BotUnderTest
from tests.fixtures_synapse import MakeUser, NioClientFactory
from tests.matrix_helpers import send_text, sync_once, wait_for_message
from tests.report_seed import PEOPLE, seed_report_grid
from tests.test_visits_e2e import reply_to, room_for

TZ = ZoneInfo("Asia/Shanghai")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)  # type: ignore[misc]


async def files_from(
    client: AsyncClient, room: str, bot: BotUnderTest, since: str | None = None
) -> dict[str, bytes]:
    """The files the bot sent in ``room`` (newest first, back to event ``since``), downloaded."""
    await bot.wait_idle()
    await sync_once(client)
    resp = await client.room_messages(
        room, start=client.next_batch or "", direction=MessageDirection.back, limit=40
    )
    assert isinstance(resp, RoomMessagesResponse), resp
    found: dict[str, bytes] = {}
    for event in resp.chunk:
        if since and event.event_id == since:
            break
        content = event.source.get("content", {})
        if event.sender == bot.user_id and content.get("msgtype") in ("m.file", "m.image"):
            got = await client.download(mxc=content["url"])
            assert isinstance(got, DownloadResponse), got
            assert content["info"]["mimetype"] in ("image/png", XLSX)
            found[content["body"]] = got.body
    return found


def named(book: openpyxl.Workbook, name: str) -> object:
    (sheet, ref), *_ = book.defined_names[name].destinations
    return book[sheet][ref.replace("$", "")].value


async def test_report_in_the_level1_room_and_the_monthly_report_on_time(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    uid, password = await make_user("l1office")
    bot = await gridbot()
    mxids = {k: f"@{k}-report:localhost" for k in PEOPLE} | {"l1office": uid}
    g = await seed_report_grid(bot.db, mxids)
    office = await nio_client(uid, password)
    with time_machine.travel(at(2026, 11, 27, 10, 0), tick=False) as clock:
        await bot.start()  # the start tick plans the month's report for 12-01
        room = await room_for(bot, office, "l1_room", grid_id=g.grids["L1"])
        asked = await send_text(office, room, "/报表 月")
        summary = await wait_for_message(
            office, room, lambda e: e.sender == bot.user_id and reply_to(e) == asked, timeout=60
        )
        assert summary.body.startswith("芦溪县2026年11月网格工作月报（截至 2026-11-27）\n")
        assert "合计：40% | — | 67% | 0 | — | 0 | — | 0" in summary.body
        assert "附件：芦溪县-2026-11-月报.png、芦溪县-2026-11-月报.xlsx" in summary.body
        got = await files_from(office, room, bot, since=asked)
        assert set(got) == {"芦溪县-2026-11-月报.png", "芦溪县-2026-11-月报.xlsx"}
        assert got["芦溪县-2026-11-月报.png"].startswith(b"\x89PNG")
        book = openpyxl.load_workbook(io.BytesIO(got["芦溪县-2026-11-月报.xlsx"]))
        assert named(book, "total_visit_rate") == 2 / 5
        assert named(book, "total_notice_targets") == 3

        # The first working day of December, 09:00: the November report posts itself, once.
        clock.move_to(at(2026, 12, 1, 9, 0, 30))
        assert bot.bot and bot.bot.scheduler
        await bot.bot.scheduler.tick()
        auto = await wait_for_message(
            office, room, lambda e: e.sender == bot.user_id and "【自动报表】" in e.body, timeout=60
        )
        assert auto.body.startswith("【自动报表】芦溪县2026年11月网格工作月报\n")
        assert "合计：40% | — | 67% | 0 | — | 0 | — | 0" in auto.body and "延迟" not in auto.body
        again = await files_from(office, room, bot, since=auto.event_id)
        assert set(again) == {"芦溪县-2026-11-月报.png", "芦溪县-2026-11-月报.xlsx"}
        await bot.bot.scheduler.tick()
        later = await bot.messages_when_idle(office, room)  # the visits' own month-end summary
        assert [m.body for m in later if "【自动报表】" in m.body] == []
        await bot.stop()
