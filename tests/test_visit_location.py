"""Location on visits (实地走访): the geo: URI a phone shares, the one on-site rule at the radius,
the roster's 经度/纬度 columns, and the /visit flow and reports marking 现场 / 异地 / 未定位.

Fast: no homeserver. The end-to-end proof with a real m.location event on Synapse is in
tests/test_visits_e2e.py.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import time_machine
import yaml
from sqlalchemy import select

from bot.config import ConfigError, parse_config
from bot.geo import GeoPoint, distance_m, parse_geo_uri
from bot.roster.apply import ChangeKind, import_roster
from bot.roster.check import coverage_summary
from bot.roster.layout import COLUMNS, column_key
from bot.roster.parse import read_roster
from bot.sandbox import DEMO_ROSTER
from messages import Messages
from storage.db import Database
from storage.models import Enterprise, OutboxMessage
from storage.visits import (
    AWAY,
    NOT_LOCATED,
    ON_SITE,
    ONSITE_RADIUS_M,
    Siting,
    Visit,
    get_visit,
    siting,
)
from tests.roster_seed import set_room
from tests.test_visits_unit import CHIEF, MEMBER, setup
from tests.visits_seed import GANXI, TONGDA, VisitGrid

TZ = ZoneInfo("Asia/Shanghai")
# 赣西物流's coordinates in these tests; 0.018° of latitude north of it is 2.0 km away.
SITE = GeoPoint(27.63, 113.85)
AWAY_URI = "geo:27.648,113.85"
ONSITE_URI = "geo:27.6302,113.8501;u=15"  # about 24 m away, accuracy 15 m


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)  # type: ignore[misc]


def location(geo_uri: str) -> dict[str, Any]:
    """The content Element sends for "share my current location" (m.location)."""
    return {"msgtype": "m.location", "geo_uri": geo_uri}


async def place(db: Database, enterprise_id: int, point: GeoPoint | None) -> None:
    async with db.transaction() as s:
        ent = await s.get(Enterprise, enterprise_id)
        assert ent is not None
        ent.latitude = point.latitude if point else None
        ent.longitude = point.longitude if point else None


async def located_grid(db: Database, **config: Any) -> tuple[Any, VisitGrid]:
    """The visits county; 赣西物流 has coordinates (and an enterprise room), 通达 has none."""
    h, g = await setup(db, **config)
    await place(db, g.enterprises[GANXI], SITE)
    await set_room(db, "!ent:localhost", "enterprise_room", enterprise_id=g.enterprises[GANXI])
    await set_room(db, "!l2:localhost", "l2_room", grid_id=g.grids["freight"])
    return h, g


async def outbox_after(db: Database, last: int) -> list[OutboxMessage]:
    async with db.transaction() as s:
        q = select(OutboxMessage).where(OutboxMessage.id > last).order_by(OutboxMessage.id)
        return list(await s.scalars(q))


async def last_outbox_id(db: Database) -> int:
    async with db.transaction() as s:
        rows = list(await s.scalars(select(OutboxMessage.id)))
    return max(rows, default=0)


# --- geo: URIs and distances -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("geo:27.63,113.85;u=20", GeoPoint(27.63, 113.85, 20.0)),
        ("geo:27.63,113.85", GeoPoint(27.63, 113.85)),
        ("GEO:-33.9,-70.7", GeoPoint(-33.9, -70.7)),  # the scheme is case-insensitive
        ("geo:27.63,113.85,120.5;u=8.5", GeoPoint(27.63, 113.85, 8.5)),  # altitude ignored
        ("geo:27.63,113.85;crs=wgs84;u=35", GeoPoint(27.63, 113.85, 35.0)),
        ("  geo:+27,113 ", GeoPoint(27.0, 113.0)),
        ("geo:90,180", GeoPoint(90.0, 180.0)),  # the edges of the globe are on it
        ("geo:27.63,113.85;u=abc", GeoPoint(27.63, 113.85)),  # a bad accuracy is dropped
    ],
)
def test_geo_uris_as_phones_send_them(uri: str, expected: GeoPoint) -> None:
    assert parse_geo_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        None,
        27.63,
        "",
        "geo:",
        "geo:27.63",  # no longitude
        "geo:27.63;113.85",
        "geo:abc,113.85",
        "geo:nan,113.85",
        "geo:91,113.85",  # latitude off the globe
        "geo:27.63,180.5",  # longitude off the globe
        "27.63,113.85",  # no scheme
        "https://maps.example/?q=27.63,113.85",
    ],
)
def test_what_is_no_geo_uri(uri: object) -> None:
    assert parse_geo_uri(uri) is None


def test_distances_on_the_ground() -> None:
    away = parse_geo_uri(AWAY_URI)
    assert away is not None
    assert distance_m(SITE, away) == pytest.approx(2001.5, abs=1)
    assert distance_m(away, SITE) == distance_m(SITE, away)
    assert distance_m(SITE, SITE) == 0
    onsite = parse_geo_uri(ONSITE_URI)
    assert onsite is not None and distance_m(SITE, onsite) == pytest.approx(24.3, abs=0.5)
    # A degree of longitude shrinks with the latitude: cos(27.63°) × 111.2 km.
    assert distance_m(SITE, GeoPoint(27.63, 114.85)) == pytest.approx(98_520, rel=0.002)


# --- the one rule: on site, away, not located --------------------------------------------------


def test_on_site_is_within_the_radius_the_boundary_included() -> None:
    assert siting(0, 500).kind == ON_SITE
    assert siting(500, 500) == Siting(ON_SITE, 500, shared=True)
    assert siting(500.001, 500).kind == AWAY
    assert siting(2001.5, 500, accuracy_m=20) == Siting(AWAY, 2001.5, True, 20)
    assert siting(2001.5, 3000).kind == ON_SITE  # the radius is the caller's (config)
    assert siting(None, 500) == Siting(NOT_LOCATED, None, shared=False)
    # A point was shared, but the enterprise has no coordinates to measure it against.
    assert siting(None, 500, shared=True) == Siting(NOT_LOCATED, None, shared=True)


def test_the_radius_is_configured() -> None:
    base = {"homeserver": "http://127.0.0.1:1", "user_id": "@bot:localhost", "password": "x"}
    assert parse_config(base).visits.onsite_radius_m == ONSITE_RADIUS_M == 500
    cfg = parse_config({**base, "visits": {"onsite_radius_m": 1000}})
    assert cfg.visits.onsite_radius_m == 1000
    with pytest.raises(ConfigError, match=r"visits\.onsite_radius_m"):
        parse_config({**base, "visits": {"onsite_radius_m": 0}})
    with pytest.raises(ConfigError, match=r"visits\.radius: is not a known setting"):
        parse_config({**base, "visits": {"radius": 100}})


def test_distances_are_worded_in_metres_then_kilometres() -> None:
    msgs = Messages()

    def said(s: Siting, locale: str = "zh_CN") -> str:
        return msgs.render(locale, "visit_location_added", located=s, confirm=True).plain

    assert said(Siting(ON_SITE, 24.3, True, 15)).startswith(
        "已收到位置：现场（距企业 24 m，定位精度 ±15 m）。回复「确认」保存"
    )
    assert "异地（距企业 999 m）" in said(Siting(AWAY, 999.4, True))
    assert "异地（距企业 2.0 km）" in said(Siting(AWAY, 2001.5, True))
    assert "异地（距企业 12.3 km）" in said(Siting(AWAY, 12_345, True))
    assert "未定位（已共享位置，但企业未登记经纬度，无法比对）" in said(
        Siting(NOT_LOCATED, None, True)
    )
    assert "away (2.0 km from the enterprise)" in said(Siting(AWAY, 2001.5, True), "en")
    assert "on site (24 m from the enterprise, accuracy ±15 m)" in said(
        Siting(ON_SITE, 24.3, True, 15), "en"
    )


# --- roster: 经度 / 纬度 ------------------------------------------------------------------------


def demo_rows() -> list[dict[str, Any]]:
    return yaml.safe_load(Path(str(DEMO_ROSTER)).read_text(encoding="utf-8"))["rows"]


def write_yaml(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"rows": rows}, allow_unicode=True), encoding="utf-8")
    return path


def one_row(**extra: Any) -> dict[str, Any]:
    row = {
        "county": "芦溪县",
        "domain": "道路货运",
        "enterprise": "甲公司",
        "type": "货运",
        "ent_chief": "甲/13800000001",
        "l2_members": "乙/13800000002",
    }
    return {**row, **extra}


def test_coordinate_columns_in_chinese_and_english() -> None:
    assert [c.header for c in COLUMNS[-2:]] == ["经度", "纬度"]
    for header, key in (
        ("经度", "longitude"),
        ("纬度", "latitude"),
        ("Longitude", "longitude"),
        ("latitude", "latitude"),
        ("lng", "longitude"),
        ("lat", "latitude"),
        ("东经", "longitude"),
        ("北纬", "latitude"),
    ):
        assert column_key(header) == key, header


def test_coordinates_are_read_from_yaml_csv_and_xlsx(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path / "r.yaml",
        [
            one_row(longitude=114.0583, latitude=27.6127),
            one_row(enterprise="乙公司", 经度="１１４．０３°", 纬度=" 27.6 "),
            one_row(enterprise="丙公司"),  # no coordinates: optional
        ],
    )
    parsed = read_roster(path)
    assert parsed.errors == []
    assert [(r.longitude, r.latitude) for r in parsed.rows] == [
        (114.0583, 27.6127),
        (114.03, 27.6),
        (None, None),
    ]
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(["县", "业务领域", "企业名称", "企业类型", "企业负责人", "Longitude", "纬度"])
    writer.writerow(
        ["芦溪县", "道路货运", "甲公司", "货运", "甲/13800000001", "114.0583", "27.6127"]
    )
    (tmp_path / "r.csv").write_bytes(buf.getvalue().encode("utf-8-sig"))
    (row,) = read_roster(tmp_path / "r.csv").rows
    assert (row.longitude, row.latitude) == (114.0583, 27.6127)
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["县", "业务领域", "企业名称", "企业类型", "企业负责人", "经度", "纬度"])
    ws.append(["芦溪县", "道路货运", "甲公司", "货运", "甲/13800000001", 114.0583, 27.6127])
    wb.save(tmp_path / "r.xlsx")
    (row,) = read_roster(tmp_path / "r.xlsx").rows
    assert (row.longitude, row.latitude) == (114.0583, 27.6127)


@pytest.mark.parametrize(
    ("lon", "lat", "message"),
    [
        ("114.0583", None, "经度和纬度须同时填写"),
        (None, "27.6127", "经度和纬度须同时填写"),
        ("东经114度", "27.6127", "「经度」「东经114度」不是数字"),
        ("114.0583", "abc", "「纬度」「abc」不是数字"),
        ("114°03′30″", "27.6127", "应为十进制度数"),
        ("nan", "27.6127", "不是数字"),
        ("114.0583", "95", "纬度 95 超出范围"),
        ("-181", "27.6127", "经度 -181 超出范围"),
        ("27.6127", "114.0583", "似乎填反了"),
    ],
)
def test_bad_coordinates_are_a_row_error(
    tmp_path: Path, lon: str | None, lat: str | None, message: str
) -> None:
    cells = {k: v for k, v in (("经度", lon), ("纬度", lat)) if v is not None}
    path = write_yaml(tmp_path / "bad.yaml", [one_row(), one_row(enterprise="乙公司", **cells)])
    parsed = read_roster(path)
    assert [e.row for e in parsed.errors] == [2], parsed.errors
    assert message in str(parsed.errors[0]) and " / " in str(parsed.errors[0])
    assert str(parsed.errors[0]).startswith("第2行: ")


async def test_import_keeps_coordinates_and_check_counts_them(db: Database, tmp_path: Path) -> None:
    day = date(2026, 1, 5)
    rows = demo_rows()
    result = await import_roster(db, write_yaml(tmp_path / "a.yaml", rows), today=day)
    assert result.applied and result.errors == []
    async with db.transaction() as s:
        ents = {e.name: e for e in await s.scalars(select(Enterprise))}
    ganxi = ents["芦溪县赣西物流有限公司"]
    assert (ganxi.longitude, ganxi.latitude) == (114.0583, 27.6127)
    assert ents["国道G319线芦溪段改建工程"].latitude is None  # a road project: none given
    summary = await coverage_summary(db)
    assert (summary.enterprises, summary.located) == (15, 12)

    # The same file again changes nothing (floats read back compare as the same point).
    again = await import_roster(db, write_yaml(tmp_path / "a.yaml", rows), today=day)
    assert len(again.changes) == 0

    # A moved enterprise is a change; a row without coordinates keeps the known ones.
    for row in rows:
        if row["enterprise"] == "芦溪县赣西物流有限公司":
            row["longitude"], row["latitude"] = 114.06, 27.61
        if row["enterprise"] == "芦溪汽车站":
            del row["longitude"], row["latitude"]
    moved = await import_roster(db, write_yaml(tmp_path / "b.yaml", rows), today=day)
    assert [str(c) for c in moved.changes.changed] == [
        "芦溪县/芦溪县赣西物流有限公司：经纬度 114.0583, 27.6127 → 114.06, 27.61"
    ]
    assert moved.changes.changed[0].kind == ChangeKind.ENTERPRISE
    async with db.transaction() as s:
        station = await s.scalar(select(Enterprise).where(Enterprise.name == "芦溪汽车站"))
        assert station is not None and (station.longitude, station.latitude) == (114.0325, 27.6318)


# --- /visit: the location step, later locations, saving and marking --------------------------


async def test_location_step_then_a_better_one_with_the_photos(sqlite_db: Database) -> None:
    h, _g = await located_grid(sqlite_db)
    with time_machine.travel(at(2026, 11, 20, 10, 0), tick=False):
        await h.say(MEMBER, "/visit")
        for answer in ("3", "今天", "查了车辆动态监控"):
            await h.say(MEMBER, answer)
        (ask,) = await h.say(MEMBER, "无")
        assert ask.startswith("请共享你现在的位置") and "附件/➕ → 位置" in ask and "跳过" in ask
        # A photo or a word is no location: asked again with how.
        out = await h.say(MEMBER, "我在现场")
        assert out == [
            "请共享你的当前位置（Element：附件/➕ → 位置 → 共享我的当前位置）；"
            "不方便共享请回复「跳过」。"
        ]
        # A location whose geo: URI cannot be read is no location either: asked again.
        assert await h.say(MEMBER, "Location", **location("geo:abc")) == out
        (out,) = await h.say(MEMBER, "Location", **location(AWAY_URI))
        assert out.startswith("已收到位置：异地（距企业 2.0 km）。\n请发送现场照片")
        # On the site after all: a location sent with the photos replaces the first one.
        out = await h.say(MEMBER, "Location", **location(ONSITE_URI))
        assert out == [
            "已收到位置：现场（距企业 24 m，定位精度 ±15 m）。继续发送照片，或回复「完成」。"
        ]
        (summary,) = await h.say(MEMBER, "完成")
        assert "\n位置：现场（距企业 24 m，定位精度 ±15 m）\n" in summary
        last = await last_outbox_id(sqlite_db)
        await h.say(MEMBER, "确认")
        posted, saved = await outbox_after(sqlite_db, last)
    assert posted.room_id == "!ent:localhost"
    assert "\n位置：现场（距企业 24 m，定位精度 ±15 m）" in posted.content["body"]
    assert "<li>位置：现场（距企业 24 m，定位精度 ±15 m）</li>" in posted.content["formatted_body"]
    assert "位置：现场" in saved.content["body"]
    async with sqlite_db.transaction() as s:
        v = await get_visit(s, "V-2026-0001")
        assert v is not None
        assert (v.latitude, v.longitude, v.accuracy_m) == (27.6302, 113.8501, 15.0)
        assert v.distance_m == pytest.approx(24.3, abs=0.5)
        assert v.siting(500).kind == ON_SITE and v.siting(20).kind == AWAY


async def test_one_line_visit_takes_a_location_at_the_summary(sqlite_db: Database) -> None:
    h, g = await located_grid(sqlite_db)
    with time_machine.travel(at(2026, 11, 20, 10, 0), tick=False):
        (summary,) = await h.say(MEMBER, "/走访 赣西物流 检查了车辆动态监控，无问题")
        assert "位置：未定位（未共享位置），保存前仍可共享位置（附件/➕ → 位置）" in summary
        out = await h.say(MEMBER, "Location", **location(AWAY_URI))
        assert out == ["已收到位置：异地（距企业 2.0 km）。回复「确认」保存，「取消」放弃。"]
        (saved,) = [b for b in await h.say(MEMBER, "确认") if b.startswith("已保存")]
        assert "\n位置：异地（距企业 2.0 km）\n" in saved

        # Skipped: not located. Without coordinates of the enterprise: not located either.
        await h.say(MEMBER, "/visit 赣西物流 查了台账，无问题")
        (saved,) = [b for b in await h.say(MEMBER, "确认") if b.startswith("已保存")]
        assert "位置：未定位（未共享位置）" in saved
        await h.say(MEMBER, "/visit 通达 查了台账，无问题")
        out = await h.say(MEMBER, "Location", **location(AWAY_URI))
        assert out == [
            "已收到位置：未定位（已共享位置，但企业未登记经纬度，无法比对）。"
            "回复「确认」保存，「取消」放弃。"
        ]
        (saved,) = await h.say(MEMBER, "确认")
        assert "位置：未定位（已共享位置，但企业未登记经纬度，无法比对）" in saved
    async with sqlite_db.transaction() as s:
        visits = {v.code: v for v in await s.scalars(select(Visit))}
    assert visits["V-2026-0001"].distance_m == pytest.approx(2001.5, abs=1)
    assert visits["V-2026-0002"].latitude is None and visits["V-2026-0002"].distance_m is None
    tongda = visits["V-2026-0003"]
    assert tongda.enterprise_id == g.enterprises[TONGDA]
    assert (tongda.latitude, tongda.longitude, tongda.distance_m) == (27.648, 113.85, None)
    assert tongda.siting(500) == Siting(NOT_LOCATED, None, shared=True)


async def test_skip_and_the_configured_radius(sqlite_db: Database) -> None:
    h, _g = await located_grid(sqlite_db, visits={"onsite_radius_m": 3000})
    with time_machine.travel(at(2026, 11, 20, 10, 0), tick=False):
        await h.say(MEMBER, "/visit")
        for answer in ("3", "今天", "查了", "无"):
            await h.say(MEMBER, answer)
        (out,) = await h.say(MEMBER, "Location", **location(AWAY_URI))
        assert out.startswith("已收到位置：现场（距企业 2.0 km）")  # within 3 km here
        await h.say(MEMBER, "跳过")
        await h.say(MEMBER, "确认")
        await h.say(MEMBER, "/visit")
        for answer in ("3", "今天", "查了", "无"):
            await h.say(MEMBER, answer)
        assert "请发送现场照片" in (await h.say(MEMBER, "跳过"))[0]
        (summary,) = await h.say(MEMBER, "跳过")
        assert "位置：未定位（未共享位置）" in summary


async def test_visits_and_the_coverage_table_mark_each_visit(sqlite_db: Database) -> None:
    h, _g = await located_grid(sqlite_db)
    with time_machine.travel(at(2026, 11, 20, 10, 0), tick=False):
        for uri in (AWAY_URI, ONSITE_URI, None):
            await h.say(MEMBER, "/visit 赣西物流 查了，无问题")
            if uri:
                await h.say(MEMBER, "Location", **location(uri))
            await h.say(MEMBER, "确认")
        await h.say(MEMBER, "/visit 通达 查了，无问题")
        await h.say(MEMBER, "Location", **location(AWAY_URI))
        await h.say(MEMBER, "确认")
        (mine,) = await h.say(MEMBER, "/visits")
        assert f"✓ {GANXI} ×3（最近 2026-11-20）\n" in mine
        assert "    V-2026-0001 2026-11-20 异地 2.0 km\n" in mine
        assert "    V-2026-0002 2026-11-20 现场\n" in mine
        assert "    V-2026-0003 2026-11-20 未定位\n" in mine
        assert "    V-2026-0004 2026-11-20 未定位" in mine  # 通达 has no coordinates
        last = await last_outbox_id(sqlite_db)
        (table,) = await h.say(CHIEF, "/visits", room="!l2:localhost")
        assert f"✓ {GANXI} ×3（现场 1，异地 1（2.0 km），未定位 1）" in table
        assert f"✓ {TONGDA} ×1（未定位 1）" in table
        (row,) = await outbox_after(sqlite_db, last)
        html = row.content["formatted_body"]
        assert f"<td>{GANXI}</td><td>3</td><td>现场 1，异地 1（2.0 km），未定位 1</td>" in html


def test_the_coverage_table_in_english_and_for_large_scopes() -> None:
    msgs = Messages()
    member = {
        "name": "张敏",
        "user_id": None,
        "total": 2,
        "visited": 1,
        "visits": 3,
        "bar": "▇▇▇▇▇░░░░░",
        "missing": ["通达"],
        "sitings": {"onsite": 1, "away": 2, "unlocated": 0, "farthest": 5234.0},
        "pairs": [
            {
                "name": "赣西",
                "count": 3,
                "sitings": {"onsite": 1, "away": 2, "unlocated": 0, "farthest": 5234.0},
            },
            {
                "name": "通达",
                "count": 0,
                "sitings": {"onsite": 0, "away": 0, "unlocated": 0, "farthest": None},
            },
        ],
    }
    grid = {
        "name": "货运",
        "total": 2,
        "visited": 1,
        "rate": 50,
        "unserved": [],
        "members": [member],
    }
    values = {
        "month": "2026-11",
        "current": True,
        "grids": [grid],
        "total": 2,
        "visited": 1,
        "rate": 50,
    }
    detail = msgs.render("en", "visits_table", detail=True, **values).plain
    assert "✓ 赣西 ×3 (on site 1, away 2 (farthest 5.2 km))" in detail and detail.endswith("✗ 通达")
    short = msgs.render("zh_CN", "visits_table", detail=False, **values)
    assert "张敏 ▇▇▇▇▇░░░░░ 1/2（3 次） 现场 1，异地 2（最远 5.2 km）" in short.plain
    assert "<td>3</td><td>现场 1，异地 2（最远 5.2 km）</td><td>通达</td>" in short.html
