"""The admin room without a homeserver: roster upload → dry run → ✅ → import (and a
provisioning request), errors → the annotated workbook, export round trip, concurrent uploads,
bad files, scoped admins, /coverage, /health, /history admin."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from openpyxl import load_workbook
from sqlalchemy import func, select

import handlers.admin.admins
import handlers.admin.audit
import handlers.admin.coverage
import handlers.admin.health
import handlers.admin.roster
import handlers.basics.cancel
import handlers.cases.history
from bot.roster.apply import import_roster
from bot.sandbox import DEMO_ROSTER
from handlers.admin import files
from storage import admins as admin_store
from storage.db import Database
from storage.models import AdminAudit, Enterprise, OutboxFile, OutboxMessage, ProvisionRequest
from tests.dispatch_harness import DispatchHarness
from tests.dispatch_harness import test_config as make_config
from tests.roster_seed import set_room

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo-county.xlsx"
BOSS = "@boss:localhost"
OTHER = "@other:localhost"
ROOM = "!admin:localhost"
MODULES = [
    handlers.admin.roster,
    handlers.admin.admins,
    handlers.admin.coverage,
    handlers.admin.health,
    handlers.admin.audit,
    handlers.cases.history,
    handlers.basics.cancel,
]
NEW_ENTERPRISE = "芦溪测试运输有限公司"


def demo_with(extra: list[Any] | None = None, blank_type_rows: tuple[int, ...] = ()) -> bytes:
    wb = load_workbook(DEMO)
    ws = wb.worksheets[0]
    for row in blank_type_rows:
        ws.cell(row=row, column=13).value = None  # 企业类型, required
    if extra:
        ws.append(extra)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


EXTRA_ROW = [
    "江西省", "萍乡市", "芦溪县", "县", None, None, None, "道路客运", None, None,
    "李文斌/13807991012/@liwenbin:localhost", NEW_ENTERPRISE, "客运",
    "测试甲/13807999001/@ceshijia:localhost", None, None, None,
]  # fmt: skip


class Store:
    """Media the harness's download finds: mxc → bytes."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def put(self, name: str, data: bytes) -> dict[str, Any]:
        url = f"mxc://test/{len(self.files)}"
        self.files[url] = data
        return {
            "msgtype": "m.file",
            "body": name,
            "url": url,
            "info": {"size": len(data), "mimetype": files.XLSX_MIME},
        }

    async def __call__(self, mxc: str) -> bytes:
        return self.files[mxc]


@pytest.fixture
async def admin_room(sqlite_db: Database, tmp_path: Path) -> tuple[DispatchHarness, Store]:
    result = await import_roster(sqlite_db, DEMO)
    assert result.applied, result.errors
    await set_room(sqlite_db, ROOM, "admin_room")
    h = DispatchHarness(sqlite_db, MODULES, make_config(admins=[BOSS]))
    store = Store()
    h.services.download = store
    return h, store


async def upload(
    h: DispatchHarness, store: Store, sender: str, name: str, data: bytes
) -> list[str]:
    return await h.deliver(sender, "m.room.message", store.put(name, data), ROOM)


async def fingerprint(db: Database) -> str:
    async with db.transaction() as s:
        return await admin_store.roster_fingerprint(s)


async def enterprise_exists(db: Database, name: str) -> bool:
    async with db.transaction() as s:
        n = await s.scalar(
            select(func.count()).where(Enterprise.name == name, Enterprise.active.is_(True))
        )
    return bool(n)


async def last_file(db: Database) -> OutboxFile:
    async with db.transaction() as s:
        row = await s.scalar(select(OutboxFile).order_by(OutboxFile.id.desc()).limit(1))
    assert row is not None
    return row


async def test_upload_diff_confirm_by_tap_imports_and_queues_provisioning(admin_room: Any) -> None:
    h, store = admin_room
    said = await upload(h, store, BOSS, "名册.xlsx", demo_with(EXTRA_ROW))
    diff = said[-1]
    assert "新增" in diff and NEW_ENTERPRISE in diff and "✅" in diff
    assert said[0].endswith("-变更.txt")  # the full diff as a file, before the question
    assert h.taps == ["✅", "❌"]
    assert not await enterprise_exists(h.db, NEW_ENTERPRISE)
    said = await h.tap_last(BOSS, "✅", ROOM)
    assert any("已导入" in s for s in said), said
    assert any("建群" in s for s in said)
    assert await enterprise_exists(h.db, NEW_ENTERPRISE)
    async with h.db.transaction() as s:
        reasons = list(await s.scalars(select(ProvisionRequest.reason)))
        actions = list(await s.scalars(select(AdminAudit.action).order_by(AdminAudit.id)))
    assert reasons and reasons[0].startswith("admin-import:")
    assert actions == ["import", "provision"]
    said = await h.say(BOSS, "/history admin", room=ROOM)
    assert "import" in said[-1] and BOSS in said[-1]


async def test_confirm_by_typing_and_cancel(admin_room: Any) -> None:
    h, store = admin_room
    await upload(h, store, BOSS, "名册.xlsx", demo_with(EXTRA_ROW))
    said = await h.say(BOSS, "取消", room=ROOM)
    assert "已取消" in said[-1]
    assert not await enterprise_exists(h.db, NEW_ENTERPRISE)
    await upload(h, store, BOSS, "名册.xlsx", demo_with(EXTRA_ROW))
    said = await h.say(BOSS, "确认", room=ROOM)
    assert any("已导入" in s for s in said)
    assert await enterprise_exists(h.db, NEW_ENTERPRISE)


async def test_bad_rows_come_back_marked_in_the_workbook_and_nothing_is_written(
    admin_room: Any,
) -> None:
    h, store = admin_room
    before = await fingerprint(h.db)
    said = await upload(h, store, BOSS, "名册.xlsx", demo_with(blank_type_rows=(4, 7)))
    assert "2 个错误" in said[-1], said
    annotated = await last_file(h.db)
    assert annotated.name.endswith("-错误标注.xlsx")
    marked = files.error_rows(annotated.data)
    assert sorted(marked) == [4, 7]
    ws = load_workbook(io.BytesIO(annotated.data)).worksheets[0]
    assert ws.cell(row=4, column=12).fill.start_color.rgb.endswith("FFC7CE")
    assert ws.cell(row=5, column=12).fill.start_color.rgb in (None, "00000000")
    assert await fingerprint(h.db) == before
    assert h.taps == []


async def test_export_then_upload_unchanged_is_no_change(admin_room: Any) -> None:
    h, store = admin_room
    said = await h.say(BOSS, "/导出名册", room=ROOM)
    assert "15" in said[-1]
    exported = await last_file(h.db)
    said = await upload(h, store, BOSS, exported.name, exported.data)
    assert "没有变化" in said[-1], said


async def test_two_admins_at_once_the_second_confirms_again(admin_room: Any) -> None:
    h, store = admin_room
    await h.say(BOSS, f"/admin add {OTHER}", room=ROOM)
    second = demo_with(
        [*EXTRA_ROW[:11], "芦溪另一运输有限公司", "客运", "测试乙/13807999002", None, None, None]
    )
    await upload(h, store, BOSS, "a.xlsx", demo_with(EXTRA_ROW))
    await upload(h, store, OTHER, "b.xlsx", second)
    said = await h.say(BOSS, "确认", room=ROOM)
    assert any("已导入" in s for s in said)
    said = await h.say(OTHER, "确认", room=ROOM)
    assert any("变化" in s for s in said), said  # changed meanwhile: a new diff, asked again
    assert not await enterprise_exists(h.db, "芦溪另一运输有限公司")
    # The new diff is against the state it will be applied to: the other file lacks the
    # first one's enterprise, so applying it deactivates that one.
    assert f"- [企业] 芦溪县/{NEW_ENTERPRISE}" in said[-1], said[-1]
    said = await h.say(OTHER, "确认", room=ROOM)
    assert any("已导入" in s for s in said)
    assert await enterprise_exists(h.db, "芦溪另一运输有限公司")


async def test_someone_elses_tap_is_not_taken(admin_room: Any) -> None:
    h, store = admin_room
    await upload(h, store, BOSS, "名册.xlsx", demo_with(EXTRA_ROW))
    said = await h.tap_last("@stranger:localhost", "✅", ROOM)
    assert said and "只有管理员" in said[-1]
    assert not await enterprise_exists(h.db, NEW_ENTERPRISE)


@pytest.mark.parametrize(
    ("name", "data", "says"),
    [
        ("photo.jpg", b"\xff\xd8\xff\xe0 jpeg", "不是名册文件"),
        ("empty.xlsx", b"", "空文件"),
        ("renamed.xlsx", b"\x89PNG\r\n\x1a\n binary", "不是有效的 Excel"),
        ("binary.csv", b"\x00\x01\x02\x03" * 50, "二进制"),
    ],
)
async def test_files_that_are_not_rosters_are_refused(
    admin_room: Any, name: str, data: bytes, says: str
) -> None:
    h, store = admin_room
    before = await fingerprint(h.db)
    said = await upload(h, store, BOSS, name, data)
    assert says in said[-1], said
    assert await fingerprint(h.db) == before


async def test_a_file_over_the_limit_is_refused_before_download(
    sqlite_db: Database,
) -> None:
    await set_room(sqlite_db, ROOM, "admin_room")
    h = DispatchHarness(
        sqlite_db, MODULES, make_config(admins=[BOSS], limits={"roster_file_bytes": 10_000})
    )
    store = Store()
    h.services.download = store
    said = await upload(h, store, BOSS, "big.xlsx", demo_with() + b"\0" * 20_000)
    assert "超过大小上限" in said[-1]


async def test_a_county_admin_cannot_touch_another_county(admin_room: Any) -> None:
    h, store = admin_room
    said = await h.say(BOSS, f"/admin add {OTHER} 芦溪县", room=ROOM)
    assert "已添加" in said[-1]
    other_county = demo_with()
    wb = load_workbook(io.BytesIO(other_county))
    for row in wb.worksheets[0].iter_rows(min_row=2):
        if row[2].value:
            row[2].value = "莲花县"
    out = io.BytesIO()
    wb.save(out)
    said = await upload(h, store, OTHER, "莲花.xlsx", out.getvalue())
    assert "只能管理本县" in said[-1], said
    said = await h.say(OTHER, "/admin add @third:localhost", room=ROOM)
    assert "只能管理本县的管理员" in said[-1]
    said = await h.say(OTHER, f"/admin remove {BOSS}", room=ROOM)
    assert "不能在群里移除" in said[-1]
    said = await h.say(BOSS, f"/admin remove {OTHER}", room=ROOM)
    assert "已移除" in said[-1]
    said = await h.say(OTHER, "/coverage", room=ROOM)
    assert "不能" in said[-1] or "权限" in said[-1] or "无权" in said[-1], said


async def test_coverage_health_and_admin_list(admin_room: Any) -> None:
    h, _ = admin_room
    said = await h.say(BOSS, "/网格检查", room=ROOM)
    assert "网格检查" in said[-1] and "企业 15" in said[-1]
    said = await h.say(BOSS, "/运行状态", room=ROOM)
    assert "运行状态" in said[-1] and "数据库大小" in said[-1]
    assert "\n运行方式：同步\n" in said[-1]  # (the harness holds no lease)
    said = await h.say(BOSS, "/管理员 list", room=ROOM)
    assert BOSS in said[-1]
    async with h.db.transaction() as s:
        n = await s.scalar(select(func.count()).select_from(OutboxMessage))
    assert n


async def test_health_watch_says_once_and_again_on_recovery(admin_room: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.dispatch_harness import deliver_pending

    h, _ = admin_room
    bad = "!gone:localhost"
    async with h.db.transaction() as s:
        from bot.outgoing import Outgoing, queue

        queue(
            s, h.services.messages, Outgoing(bad, "admin_roster_usage"), locale="zh_CN", cause="t"
        )
        old = datetime.now(UTC) - timedelta(hours=1)
        msg = await s.scalar(select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(1))
        assert msg is not None
        msg.created_at = old
    await deliver_pending(h.db, fail=frozenset({bad}))
    await h.new_messages()
    await h.scheduler.tick()
    await h.scheduler.tick()
    said = await h.new_messages()
    assert len([s for s in said if "持续失败" in s]) == 1, said
    await h.scheduler.tick()
    assert not [s for s in await h.new_messages() if "持续失败" in s]
    async with h.db.transaction() as s:
        queue(
            s, h.services.messages, Outgoing(bad, "admin_roster_usage"), locale="zh_CN", cause="u"
        )
    await deliver_pending(h.db)
    await h.scheduler.tick()
    await h.scheduler.tick()
    said = await h.new_messages()
    assert any("已恢复" in s for s in said), said


async def test_import_command_as_a_reply_or_before_the_file(admin_room: Any) -> None:
    h, store = admin_room
    # /导入名册, then the file: the conversation takes it.
    said = await h.say(BOSS, "/导入名册", room=ROOM)
    assert "请发送名册文件" in said[-1]
    said = await upload(h, store, BOSS, "名册.xlsx", demo_with(EXTRA_ROW))
    assert "试运行" in said[-1] and h.taps == ["✅", "❌"]
    await h.say(BOSS, "取消", room=ROOM)
    # A file an admin of the room sent earlier, answered with /roster import as a reply.
    media = store.put("名册.xlsx", demo_with(EXTRA_ROW))
    await h.deliver(OTHER, "m.room.message", media, ROOM)  # not an admin: not taken
    file_event = h.last_event_id
    said = await h.say(
        BOSS,
        "/roster import",
        room=ROOM,
        **{"m.relates_to": {"m.in_reply_to": {"event_id": file_event}}},
    )
    assert "试运行" in said[-1], said
    said = await h.tap_last(BOSS, "✅", ROOM)
    assert any("已导入" in s for s in said)


def _gbk_csv_with_blank_types(records: tuple[int, ...]) -> bytes:
    """The demo roster as Excel on a Chinese Windows saves it (GBK, CRLF), 企业类型 left blank
    on the given records (header = 1)."""
    text = (ROOT / "examples" / "demo-county.csv").read_text("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    col = rows[0].index("企业类型")
    for r in records:
        rows[r - 1][col] = ""
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("gb18030")


async def test_a_csv_with_bad_rows_comes_back_marked_in_its_own_encoding(
    admin_room: Any,
) -> None:
    h, store = admin_room
    before = await fingerprint(h.db)
    data = _gbk_csv_with_blank_types((3, 6))
    said = await upload(h, store, BOSS, "名册.csv", data)
    assert "2 个错误" in said[-1], said
    annotated = await last_file(h.db)
    assert annotated.name == "名册-错误标注.csv" and annotated.mimetype.startswith("text/csv")
    text = annotated.data.decode("gb18030")  # as it was sent: GBK, CRLF, commas
    assert "\r\n" in text and not annotated.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    original = list(csv.reader(io.StringIO(data.decode("gb18030"), newline="")))
    assert rows[0][-1] == files.ERROR_HEADER
    marked = {i + 1: r[-1] for i, r in enumerate(rows) if i and r[-1]}
    assert sorted(marked) == [3, 6] and all("企业类型" in m for m in marked.values())
    # Every other cell is as the office wrote it.
    assert [r[: len(original[0])] for r in rows] == [
        r + [""] * (len(original[0]) - len(r)) for r in original
    ]
    assert await fingerprint(h.db) == before


def _demo_yaml_rows() -> list[dict[str, Any]]:
    return yaml.safe_load(Path(str(DEMO_ROSTER)).read_text("utf-8"))["rows"]


async def test_a_yaml_with_bad_rows_gets_the_list_and_a_marked_workbook(admin_room: Any) -> None:
    h, store = admin_room
    before = await fingerprint(h.db)
    rows = _demo_yaml_rows()
    for i in (1, 4):  # the 2nd and 5th rows
        rows[i]["type"] = None
    data = yaml.safe_dump({"rows": rows}, allow_unicode=True).encode()
    said = await upload(h, store, BOSS, "名册.yaml", data)
    assert "2 个错误" in said[-1] and "第2行" in said[-1], said
    annotated = await last_file(h.db)
    assert annotated.name == "名册-错误标注.xlsx"
    marked = files.error_rows(annotated.data)
    assert sorted(marked) == [3, 6]  # under a header row: YAML row n is sheet row n + 1
    ws = load_workbook(io.BytesIO(annotated.data)).worksheets[0]
    headers = [c.value for c in ws[1]]
    assert headers[-1] == files.ERROR_HEADER and "企业类型" in headers
    cells = {h_: ws.cell(row=2, column=i + 1).value for i, h_ in enumerate(headers)}
    assert cells["企业名称"] == rows[0]["enterprise"]
    assert cells["企业网格员"] == "；".join(rows[0]["ent_members"])
    assert await fingerprint(h.db) == before
