"""Voice notes and documents as evidence (bot.evidence): what is taken and what is refused, how a
kept item is shown, and the conversations that keep them (hazard, rectification, accident,
visit) through the real dispatcher, with their relay into the rooms (no homeserver)."""

from __future__ import annotations

from typing import Any

import pytest
import time_machine

from bot import evidence
from bot.evidence import DOCUMENT, NOT_MXC, PHOTO, UNSUPPORTED, VOICE, Evidence, Refused
from messages import LOCALES, Messages
from storage.db import Database
from storage.visits import get_visit
from tests.roster_seed import set_room
from tests.test_cases_unit import DM, ENT_A, L1, L2, MONDAY_9, P, thread_of, world
from tests.test_visits_unit import DM as VISIT_DM
from tests.test_visits_unit import MEMBER, Outbox, at, setup
from tests.visits_seed import GANXI

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def voice(url: Any = "mxc://localhost/voice1", duration: Any = 42000) -> dict[str, Any]:
    """An Element voice message (m.audio with org.matrix.msc3245.voice)."""
    return {
        "msgtype": "m.audio",
        "url": url,
        "info": {"mimetype": "audio/ogg", "size": 38912, "duration": duration},
        "org.matrix.msc3245.voice": {},
        "org.matrix.msc1767.audio": {"duration": duration},
    }


def document(
    mimetype: str = "application/pdf", url: str = "mxc://localhost/doc1"
) -> dict[str, Any]:
    """An m.file event's content but its body (the file name, given to ``say``)."""
    return {"msgtype": "m.file", "url": url, "info": {"mimetype": mimetype, "size": 1258291}}


def media(
    msgtype: str, name: str, mimetype: str = "", url: Any = "mxc://localhost/x", **info: Any
) -> dict[str, Any]:
    """A file message as a conversation step sees it (``Incoming.media``)."""
    return {"msgtype": msgtype, "url": url, "name": name, "info": {"mimetype": mimetype, **info}}


# --- the rules ---------------------------------------------------------------------------------


def test_voice_notes_photos_and_office_documents_are_taken() -> None:
    got = evidence.take(
        {"msgtype": "m.audio", "name": "Voice message", **voice("mxc://localhost/v")}
    )
    assert got == Evidence(
        VOICE,
        {
            "msgtype": "m.audio",
            "url": "mxc://localhost/v",
            "name": "Voice message",
            "info": {"mimetype": "audio/ogg", "size": 38912, "duration": 42000},
        },
    )
    # An audio file sent as m.file is a voice note too, and relayed as m.audio.
    got = evidence.take(media("m.file", "录音.m4a", "audio/mp4", size=10))
    assert isinstance(got, Evidence) and (got.kind, got.item["msgtype"]) == (VOICE, "m.audio")
    # Photos keep their pixels; an image sent as a file is a photo.
    got = evidence.take(media("m.file", "现场.jpg", "image/jpeg", w=4, h=3, duration=1))
    assert isinstance(got, Evidence) and got.kind == PHOTO
    assert got.item["info"] == {"mimetype": "image/jpeg", "w": 4, "h": 3}
    assert evidence.kind_of("m.image", "", "IMG_1.HEIC") == PHOTO
    # Every Office and PDF extension, with its own type or a vague one.
    for ext, types in evidence.DOCUMENTS.items():
        for mimetype in (*types, "application/octet-stream", ""):
            assert evidence.kind_of("m.file", mimetype, f"整改方案{ext.upper()}") == DOCUMENT
    # A caption with no extension: the mimetype decides.
    assert evidence.kind_of("m.file", DOCX, "整改方案") == DOCUMENT
    assert evidence.kind_of("m.file", "application/pdf; charset=binary", "x") == DOCUMENT
    got = evidence.take(media("m.file", "  整改\n方案.pdf ", "application/pdf", size=5))
    assert isinstance(got, Evidence) and got.item["name"] == "整改 方案.pdf"
    assert got.item["msgtype"] == "m.file" and got.item["info"]["size"] == 5


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        42,
        None,
        "",
        "https://example.org/a.ogg",
        "mxc://",
        "mxc://localhost/",
        "mxc://localhost/a b",
        'mxc://localhost/a"onerror="x',
        "MXC://localhost/abc",
        ["mxc://localhost/abc"],
    ],
)
def test_anything_but_an_mxc_url_is_refused(url: Any) -> None:
    assert evidence.take(media("m.audio", "Voice message", "audio/ogg", url=url)) == Refused(
        NOT_MXC
    )
    assert not evidence.is_mxc(url)


@pytest.mark.parametrize(
    ("msgtype", "name", "mimetype"),
    [
        ("m.video", "现场.mp4", "video/mp4"),
        ("m.file", "现场.mov", "video/quicktime"),
        ("m.file", "setup.exe", "application/pdf"),  # the name says otherwise
        ("m.file", "a.pdf.exe", "application/octet-stream"),
        ("m.file", "资料.zip", "application/zip"),
        ("m.file", "说明.txt", "text/plain"),
        ("m.file", "noextension", "application/octet-stream"),
        ("m.file", "noextension", ""),
        ("m.file", "page.html", "text/html"),
        ("m.audio", "Voice message", "application/x-msdownload"),
    ],
)
def test_other_files_are_refused(msgtype: str, name: str, mimetype: str) -> None:
    assert evidence.take(media(msgtype, name, mimetype)) == Refused(UNSUPPORTED)


def test_only_sane_numbers_are_kept_from_the_info() -> None:
    for bad in ("38 KB", -1, True, float("nan"), 2**60, None, [1]):
        got = evidence.take(media("m.audio", "v", "audio/ogg", size=bad, duration=bad))
        assert isinstance(got, Evidence) and got.item["info"] == {"mimetype": "audio/ogg"}
    got = evidence.take(media("m.audio", "v", "audio/ogg", duration=41999.6))
    assert isinstance(got, Evidence) and got.item["info"]["duration"] == 41999
    got = evidence.take({"msgtype": "m.audio", "url": "mxc://s/v", "name": 5, "info": "x"})
    assert isinstance(got, Evidence) and got.item == {
        "msgtype": "m.audio",
        "url": "mxc://s/v",
        "name": "voice",
        "info": {},
    }
    long = evidence.take(media("m.file", "长" * 300 + ".pdf", "application/pdf"))
    assert isinstance(long, Evidence) and len(long.item["name"]) == 200


# --- the formatter -----------------------------------------------------------------------------


def test_sizes_and_durations() -> None:
    sizes = [0, 512, 1023, 1024, 38912, 1048575, 1258291, 3 * 1024**3, None, "x"]
    assert [evidence.size_text(n) for n in sizes] == [
        "0 B",
        "512 B",
        "1023 B",
        "1 KB",
        "38 KB",
        "1024 KB",
        "1.2 MB",
        "3.0 GB",
        None,
        None,
    ]
    durations = [42000, 41600, 65400, 600_000, 3_723_000, 400, 0, None, -5]
    assert [evidence.duration_text(ms) for ms in durations] == [
        "0:42",
        "0:42",
        "1:05",
        "10:00",
        "1:02:03",
        "0:01",
        None,
        None,
        None,
    ]


def test_one_formatter_in_every_message() -> None:
    voice_item = {"msgtype": "m.audio", "name": "Voice message"}
    voice_item["info"] = {"size": 38912, "duration": 42000}
    doc = {"msgtype": "m.file", "name": "<b>整改方案.pdf", "info": {"size": 1258291}}
    bare = {"msgtype": "m.audio", "name": "v", "info": {}}
    assert evidence.facts(voice_item).details == "0:42 · 38 KB"
    assert evidence.facts(doc).details == "<b>整改方案.pdf · 1.2 MB"
    assert evidence.tally([voice_item, doc, bare]) == evidence.Tally(2, 1)
    # Long names are cut when shown, long lists too (a message must fit one event).
    long_doc = {"msgtype": "m.file", "name": "方" * 100 + ".pdf", "info": {}}
    assert evidence.facts(long_doc).details == "方" * 59 + "…"
    m = Messages()
    listed = m.label("zh_CN", "evidence_list", [voice_item] * 23)
    assert listed.count("语音 0:42 · 38 KB") == 20 and listed.endswith("；…另有 3 个")
    assert m.label("en", "evidence_list", [doc, bare]) == (
        "file <b>整改方案.pdf · 1.2 MB; voice note"
    )
    caption = {"code": "H-2026-0001", "index": 1, "total": 2}
    out = m.render("zh_CN", "evidence_caption", stage="report", item=voice_item, **caption)
    assert out.plain == "H-2026-0001 现场证据 1/2：语音 0:42 · 38 KB"
    out = m.render("zh_CN", "evidence_caption", stage="fix-0", item=doc, **caption)
    assert out.plain == "H-2026-0001 整改后证据 1/2：文件 <b>整改方案.pdf · 1.2 MB"
    assert "&lt;b&gt;整改方案.pdf" in out.html and "<b>" not in out.html
    out = m.render("en", "evidence_caption", stage="visit", item=bare, **caption)
    assert out.plain == "H-2026-0001 visit evidence 1/2: voice note"
    counts = {"photos": 2, "files": [voice_item, doc], "refused": None}
    assert m.render("zh_CN", "case_evidence_received", **counts).plain == (
        "已收到 2 张照片、1 段语音、1 个文件。继续发送，或回复“完成”。"
    )
    assert m.render("en", "case_evidence_received", **counts).plain == (
        'Received 2 photos, 1 voice note, 1 file. Send more, or reply "done".'
    )
    for locale in LOCALES:
        for refused, word in ((NOT_MXC, "mxc://"), (UNSUPPORTED, "PDF")):
            for template in ("visit_evidence_added", "case_evidence_received"):
                values = {"photos": 0, "files": [], "refused": refused, "confirm": True}
                assert word in m.render(locale, template, **values).plain


# --- the conversations ------------------------------------------------------------------------


async def test_hazard_report_keeps_voice_notes_and_documents_and_relays_them(
    db: Database,
) -> None:
    with time_machine.travel(MONDAY_9, tick=False):
        h = await world(db)
        who = P["member"]
        for answer in ("/隐患", "危化品车辆停放区无防火隔离", "停车场北侧", "3", "重大"):
            await h.say(who, answer, DM)
        assert await h.say(who, "Voice message", DM, **voice()) == [
            "已收到 1 段语音。继续发送，或回复“完成”。"
        ]
        # Refused, saying why; the step stays and keeps what it has.
        bad = voice("javascript:alert(1)")
        assert (await h.say(who, "Voice message", DM, **bad))[0].startswith("这个附件的地址无效")
        assert "地址无效" in (await h.say(who, "v", DM, **voice(url=12345)))[0]
        exe = document("application/x-msdownload", "mxc://localhost/exe")
        assert (await h.say(who, "setup.exe", DM, **exe)) == [
            "这个文件没有收下：只收照片、语音和 PDF、Word、Excel、PPT 文件。"
            "已收到 1 段语音。继续发送，或回复“完成”。"
        ]
        docx = document("application/octet-stream")
        assert await h.say(who, "整改方案.docx", DM, **docx) == [
            "已收到 1 段语音、1 个文件。继续发送，或回复“完成”。"
        ]
        assert "6/9" in (await h.say(who, "完成", DM))[0]
        for answer in ("设置警戒线", "增设隔离带", "刘强 13800000004", "3月10日"):
            await h.say(who, answer, DM)

        hz = await h.case("H-2026-0001")
        assert hz.photos == [] and hz.fix_files == []
        assert [(f["msgtype"], f["url"], f["name"]) for f in hz.files] == [
            ("m.audio", "mxc://localhost/voice1", "Voice message"),
            ("m.file", "mxc://localhost/doc1", "整改方案.docx"),
        ]
        assert hz.files[0]["info"] == {"mimetype": "audio/ogg", "size": 38912, "duration": 42000}
        assert hz.files[0]["by"] == who and hz.files[0]["event_id"].startswith("$ev")
        # In every room: the post (counting them), then each one in its thread as a file event
        # reusing the member's mxc URI.
        for room in (ENT_A, L2, L1):
            post, sound, doc = await h.rows(room)
            assert "另有 1 段语音、1 个文件" in post.content["body"], room
            assert sound.content["msgtype"] == "m.audio" and doc.content["msgtype"] == "m.file"
            assert sound.content["url"] == "mxc://localhost/voice1"
            assert sound.content["info"]["duration"] == 42000
            assert sound.content["body"] == "H-2026-0001 现场证据 1/2：语音 0:42 · 38 KB"
            assert doc.content["filename"] == "整改方案.docx"
            root = await h.root_event("H-2026-0001", room)
            assert thread_of(sound) == thread_of(doc) == root
        trail = (await h.say(P["l2chief"], "/历史 H-2026-0001", L2))[0]
        assert "语音和文件（上报）：语音 0:42 · 38 KB；文件 整改方案.docx · 1.2 MB" in trail

        # The rectification may bring a document too, but needs a photo; its files are kept
        # apart from the report's and shown in the home thread.
        await h.say(P["member"], "/隐患 H-2026-0001 确认", DM)
        await h.new_messages()
        await h.say(P["entchief"], "/隐患 H-2026-0001 整改完成")
        report = document(url="mxc://localhost/fix1")
        assert await h.say(P["entchief"], "整改报告.pdf", **report) == [
            "已收到 1 个文件。继续发送，或回复“完成”。"
        ]
        assert "至少一张整改后照片" in (await h.say(P["entchief"], "完成"))[0]
        await h.photo(P["entchief"], name="after.png")
        await h.say(P["entchief"], "完成")
        hz = await h.case("H-2026-0001")
        assert hz.status == "submitted" and [f["url"] for f in hz.fix_files] == [
            "mxc://localhost/fix1"
        ]
        assert [f["url"] for f in hz.files] == ["mxc://localhost/voice1", "mxc://localhost/doc1"]
        relayed = [m for m in await h.rows(ENT_A) if m.content.get("url") == "mxc://localhost/fix1"]
        assert len(relayed) == 1 and relayed[0].content["msgtype"] == "m.file"
        assert (
            relayed[0].content["body"].startswith("H-2026-0001 整改后证据 1/1：文件 整改报告.pdf")
        )
        submitted = [m for m in await h.rows(ENT_A) if "提交整改" in m.content["body"]]
        assert "整改后照片 1 张，另有 1 个文件" in submitted[-1].content["body"]
        trail = (await h.say(P["entchief"], "/历史 H-2026-0001"))[0]
        assert "语音和文件（整改后）：文件 整改报告.pdf · 1.2 MB" in trail


async def test_an_accident_voice_note_reaches_every_level(sqlite_db: Database) -> None:
    with time_machine.travel(MONDAY_9, tick=False):
        h = await world(sqlite_db)
        who = P["entmember"]
        for answer in ("/事故", "30分钟前", "G60 K1020", "1", "0 2 0", "赣J12345", "追尾"):
            await h.say(who, answer)
        assert "1 段语音" in (await h.say(who, "Voice message", **voice(duration=65400)))[0]
        await h.say(who, "完成")
        acc = await h.case("A-2026-0001")
        assert [f["url"] for f in acc.files] == ["mxc://localhost/voice1"]
        for room in (ENT_A, L2, L1):
            post, sound = await h.rows(room)
            assert "另有 1 段语音" in post.content["body"]
            assert (sound.content["msgtype"], sound.content["url"]) == (
                "m.audio",
                "mxc://localhost/voice1",
            )
            assert "事故现场证据 1/1：语音 1:05 · 38 KB" in sound.content["body"]
        trail = (await h.say(who, "/历史 A-2026-0001"))[0]
        assert "语音和文件：语音 1:05 · 38 KB" in trail


async def test_a_visit_keeps_a_voice_note_sent_at_the_summary_and_posts_it(
    sqlite_db: Database,
) -> None:
    h, g = await setup(sqlite_db)
    ent = "!ent:localhost"
    await set_room(sqlite_db, ent, "enterprise_room", enterprise_id=g.enterprises[GANXI])
    box = Outbox(sqlite_db)
    with time_machine.travel(at(2026, 11, 20, 10, 0), tick=False):
        out = await h.say(MEMBER, "/走访 赣西物流 检查了车辆动态监控，无问题", VISIT_DM)
        assert out[0].startswith("请核对走访记录")
        out = await h.say(MEMBER, "Voice message", VISIT_DM, **voice())
        assert out == ["已附加，共 1 段语音。回复「确认」保存，「取消」放弃。"]
        bad = voice("https://example.org/v.ogg")
        assert "地址无效" in (await h.say(MEMBER, "Voice message", VISIT_DM, **bad))[0]
        xlsx = document("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        assert "1 段语音、1 个文件" in (await h.say(MEMBER, "台账.xlsx", VISIT_DM, **xlsx))[0]
        await box.new()
        out = await h.say(MEMBER, "确认", VISIT_DM)
        assert "语音和文件：语音 0:42 · 38 KB；文件 台账.xlsx · 1.2 MB" in out[0]
        record, sound, sheet, saved = await box.new()
        assert record.room_id == sound.room_id == sheet.room_id == ent
        assert "语音和文件：语音 0:42 · 38 KB" in record.content["body"]
        assert sound.content["msgtype"] == "m.audio"
        assert sound.content["url"] == "mxc://localhost/voice1"
        assert sound.content["body"] == "V-2026-0001 走访证据 1/2：语音 0:42 · 38 KB"
        assert sound.reply_to_txn == record.txn_id and sheet.reply_to_txn == record.txn_id
        assert sheet.content["msgtype"] == "m.file" and sheet.content["filename"] == "台账.xlsx"
        assert saved.room_id == VISIT_DM
    async with sqlite_db.transaction() as s:
        v = await get_visit(s, "V-2026-0001")
        assert v is not None and v.photos == []
        assert [(f["msgtype"], f["url"]) for f in v.files] == [
            ("m.audio", "mxc://localhost/voice1"),
            ("m.file", "mxc://localhost/doc1"),
        ]
