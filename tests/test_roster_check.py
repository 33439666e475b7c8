"""Coverage check: the demo county passes; each kind of gap is found and reported."""

from __future__ import annotations

import io
import re
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select, update

from bot.roster.apply import import_roster
from bot.roster.check import GapKind, check_coverage, coverage_summary
from bot.roster.commands import cmd_check, cmd_import
from bot.sandbox import DEMO_ROSTER
from storage.db import Database
from storage.models import Assignment, Enterprise, Grid, Person, Role, RoleKind

DEMO = Path(str(DEMO_ROSTER))  # tests run from the checkout: a plain file
TODAY = date(2026, 2, 1)


def write_yaml(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"rows": rows}, allow_unicode=True), encoding="utf-8")
    return path


async def gap_set(db: Database) -> set[tuple[GapKind, str]]:
    return {(g.kind, g.subject) for g in await check_coverage(db)}


async def test_the_demo_county_has_full_coverage(db: Database) -> None:
    result = await import_roster(db, DEMO, today=TODAY)
    assert result.errors == []
    assert await check_coverage(db) == []
    summary = await coverage_summary(db)
    # 江西省, 萍乡市 and 芦溪县: the units the import added (see the test below).
    assert (summary.units, summary.level1_grids, summary.level2_grids) == (3, 1, 5)
    assert summary.units_by_kind == {"province": 1, "city": 1, "county": 1}
    assert (summary.enterprises, summary.level2_members) == (15, 9)
    out = io.StringIO()
    assert await cmd_check(db, out=out) == 0
    text = out.getvalue()
    assert "企业 15" in text and "检查通过 / full coverage, check passed" in text


async def test_check_counts_the_units_the_import_added(sqlite_db: Database) -> None:
    """The import said 单位 3 (province, city, county), the check said 单位 1 (it counted the
    counties with a level-1 grid): both now count every active unit."""
    out = io.StringIO()
    assert await cmd_import(sqlite_db, DEMO, dry_run=False, out=out) == 0
    added = re.search(r"新增 / added（\d+）：单位 (\d+)", out.getvalue())
    assert added is not None and added.group(1) == "3", out.getvalue()
    out = io.StringIO()
    assert await cmd_check(sqlite_db, out=out) == 0
    assert "单位 3（省 1，设区市 1，县 1），一级网格 1" in out.getvalue(), out.getvalue()


async def test_gaps_left_blank_in_the_file(db: Database, tmp_path: Path) -> None:
    county = {"county": "甲县", "type": "货运"}
    rows = [
        # No level-1 chief anywhere for 甲县.
        dict(
            county,
            domain="道路货运",
            l2_chief="赵一/13800000001",
            l2_members=["钱二/13800000002"],
            enterprise="甲县一号物流",
            ent_chief="孙三/13800000003",
        ),
        # Nobody serves this one.
        dict(county, domain="道路货运", enterprise="甲县二号物流", ent_chief="李四/13800000004"),
        # 港口航运 has no level-2 chief.
        dict(
            county,
            domain="港口航运",
            type="港口",
            l2_members=["周五/13800000005"],
            enterprise="甲县码头",
            ent_chief="吴六/13800000006",
        ),
    ]
    result = await import_roster(db, write_yaml(tmp_path / "thin.yaml", rows), today=TODAY)
    assert result.errors == [] and result.applied
    assert await gap_set(db) == {
        (GapKind.GRID_NO_CHIEF, "甲县一级网格"),
        (GapKind.GRID_NO_CHIEF, "甲县二级网格·港口航运"),
        (GapKind.ENTERPRISE_NO_L2_CHIEF, "甲县/甲县码头"),
        (GapKind.ENTERPRISE_NO_MEMBER, "甲县/甲县二号物流"),
    }

    out = io.StringIO()
    assert await cmd_check(db, out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0] == "网格没有网格长 / grid without chief（2）："
    assert "  - 甲县二级网格·港口航运 没有网格长 / grid has no chief" in lines
    assert (
        "  - 甲县/甲县二号物流 没有二级网格员联系 / no level-2 member serves this enterprise"
        in (lines)
    )
    assert lines[-1] == "发现 4 处缺口 / 4 gap(s) found"


async def test_gaps_that_arise_after_import(db: Database) -> None:
    """Changes the bot records later (a chief leaves, an enterprise closes) open gaps too."""
    await import_roster(db, DEMO, today=TODAY)
    async with db.transaction() as s:
        station = await s.scalar(select(Enterprise.id).where(Enterprise.name == "芦溪汽车站"))
        # 芦溪汽车站's chief role ends; 赣西物流's chief is deactivated (inactive people don't
        # count).
        await s.execute(
            update(Role)
            .where(Role.enterprise_id == station, Role.kind == RoleKind.ENT_CHIEF.value)
            .values(until=TODAY)
        )
        await s.execute(update(Person).where(Person.name == "周宏伟").values(active=False))
        # 宏源货运 closes: 林志明 served only it.
        await s.execute(
            update(Enterprise)
            .where(Enterprise.name == "芦溪县宏源货运有限公司")
            .values(active=False)
        )
        # The 渡口 grid is closed while its two ferries are still active.
        await s.execute(update(Grid).where(Grid.domain == "渡口").values(active=False))
    assert await gap_set(db) == {
        (GapKind.ENTERPRISE_NO_CHIEF, "芦溪县/芦溪汽车站"),
        (GapKind.ENTERPRISE_NO_CHIEF, "芦溪县/芦溪县赣西物流有限公司"),
        (GapKind.MEMBER_NO_ENTERPRISE, "林志明"),
        (GapKind.ENTERPRISE_NO_L2_CHIEF, "芦溪县/芦溪县山口岩水库渡口"),
        (GapKind.ENTERPRISE_NO_L2_CHIEF, "芦溪县/芦溪县南坑镇高楼渡口"),
    }
    gaps = await check_coverage(db)
    ferry = next(g for g in gaps if g.subject == "芦溪县/芦溪县山口岩水库渡口")
    assert "已停用" in ferry.description
    idle = next(g for g in gaps if g.kind is GapKind.MEMBER_NO_ENTERPRISE)
    assert idle.unit == "芦溪县" and "芦溪县二级网格·道路货运" in idle.description


async def test_member_serving_only_in_another_grid_is_idle_there(
    db: Database, tmp_path: Path
) -> None:
    # 谢春华 is a member of 港口航运 and 渡口; close his 渡口 assignment and he is idle there only.
    await import_roster(db, DEMO, today=TODAY)
    async with db.transaction() as s:
        ferry = await s.scalar(
            select(Enterprise.id).where(Enterprise.name == "芦溪县南坑镇高楼渡口")
        )
        xie = await s.scalar(select(Person.id).where(Person.name == "谢春华"))
        await s.execute(
            update(Assignment)
            .where(Assignment.enterprise_id == ferry, Assignment.person_id == xie)
            .values(until=TODAY)
        )
    gaps = await check_coverage(db)
    assert {(g.kind, g.subject) for g in gaps} == {
        (GapKind.ENTERPRISE_NO_MEMBER, "芦溪县/芦溪县南坑镇高楼渡口"),
        (GapKind.MEMBER_NO_ENTERPRISE, "谢春华"),
    }
    assert "芦溪县二级网格·渡口" in next(g for g in gaps if g.subject == "谢春华").description


async def test_an_empty_roster(sqlite_db: Database) -> None:
    out = io.StringIO()
    assert await cmd_check(sqlite_db, out=out) == 0
    assert "名册为空" in out.getvalue()
