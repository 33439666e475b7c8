"""Roster import: the three file formats, validation, re-import diffs, dry run, scoping, speed."""

from __future__ import annotations

import csv
import importlib.util
import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import yaml
from sqlalchemy import event, func, select

from bot.roster.apply import ChangeKind, ImportResult, import_roster
from bot.roster.commands import cmd_import
from bot.roster.layout import COLUMNS
from bot.roster.parse import PersonRef, RosterRow, parse_roster, read_roster
from bot.sandbox import DEMO_ROSTER
from handlers.staff.declaration import declare
from storage import staff_changes
from storage.db import Database
from storage.models import (
    AdminUnit,
    Assignment,
    Enterprise,
    EnterpriseType,
    Grid,
    Person,
    Role,
    RoleKind,
    StaffChange,
    UnitKind,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# The YAML ships with the package (the sandbox reads it); CSV and XLSX are examples only.
DEMO = {"yaml": Path(str(DEMO_ROSTER))} | {
    e: EXAMPLES / f"demo-county.{e}" for e in ("csv", "xlsx")
}
D1, D2, D3 = date(2026, 1, 5), date(2026, 3, 2), date(2026, 4, 1)


# --- helpers -----------------------------------------------------------------------------


def demo_rows() -> list[dict[str, Any]]:
    return yaml.safe_load(DEMO["yaml"].read_text(encoding="utf-8"))["rows"]


def write_yaml(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"rows": rows}, allow_unicode=True), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]], encoding: str = "utf-8-sig") -> Path:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow([c.header for c in COLUMNS])
    for row in rows:
        writer.writerow([_cell(row.get(c.key)) for c in COLUMNS])
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def _cell(value: Any) -> str:
    return "；".join(value) if isinstance(value, list) else "" if value is None else str(value)


def row_of(rows: list[dict[str, Any]], enterprise: str) -> dict[str, Any]:
    return next(r for r in rows if r["enterprise"] == enterprise)


async def snapshot(db: Database, unit: str | None = None) -> dict[str, set[tuple[Any, ...]]]:
    """What a user would notice, by name; optionally only one county's grids and enterprises."""
    async with db.transaction() as s:
        units = {u.id: u for u in (await s.scalars(select(AdminUnit))).all()}
        grids = {g.id: g for g in (await s.scalars(select(Grid))).all()}
        ents = {e.id: e for e in (await s.scalars(select(Enterprise))).all()}
        people = {p.id: p for p in (await s.scalars(select(Person))).all()}
        roles = (await s.scalars(select(Role).where(Role.until.is_(None)))).all()
        assigned = (await s.scalars(select(Assignment).where(Assignment.until.is_(None)))).all()

    def keep(unit_id: int) -> bool:
        return unit is None or units[unit_id].name == unit

    def target(role: Role) -> tuple[int, str]:
        if role.grid_id:
            return grids[role.grid_id].unit_id, grids[role.grid_id].name
        ent = ents[role.enterprise_id or 0]
        return ent.unit_id, ent.name

    roles = [r for r in roles if keep(target(r)[0])]
    assigned = [a for a in assigned if keep(ents[a.enterprise_id].unit_id)]
    holders = {r.person_id for r in roles} | {a.person_id for a in assigned}

    return {
        "units": {
            (u.kind, u.name, units[u.parent_id].name if u.parent_id else None, u.active)
            for u in units.values()
            if keep(u.id) or u.kind in (UnitKind.PROVINCE, UnitKind.CITY)
        },
        "grids": {
            (units[g.unit_id].name, g.level, g.domain, g.name, g.active)
            for g in grids.values()
            if keep(g.unit_id)
        },
        "enterprises": {
            (units[e.unit_id].name, e.name, e.type, grids[e.grid_id].domain, e.active)
            for e in ents.values()
            if keep(e.unit_id)
        },
        "people": {
            (p.name, p.phone, p.matrix_id, p.active)
            for p in people.values()
            if unit is None or p.id in holders
        },
        "roles": {(people[r.person_id].name, r.kind, target(r)[1]) for r in roles},
        "assignments": {(people[a.person_id].name, ents[a.enterprise_id].name) for a in assigned},
    }


async def count(db: Database, model: Any, *where: Any) -> int:
    async with db.transaction() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@contextmanager
def recorded_writes(db: Database) -> Iterator[list[str]]:
    """The INSERT / UPDATE / DELETE statements the engine runs inside the block."""
    statements: list[str] = []

    def before(_conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", before)


def labels(result: ImportResult, group: str, kind: ChangeKind | None = None) -> list[str]:
    return [str(c) for c in getattr(result.changes, group) if kind is None or c.kind == kind]


async def person(db: Database, name: str) -> Person:
    async with db.transaction() as s:
        return (await s.scalars(select(Person).where(Person.name == name))).one()


async def enterprise(db: Database, name: str) -> Enterprise:
    async with db.transaction() as s:
        return (await s.scalars(select(Enterprise).where(Enterprise.name == name))).one()


# --- parsing without a database ------------------------------------------------------------


def _content(rows: list[RosterRow]) -> list[tuple[Any, ...]]:
    skip = {"row", "given"}
    return [tuple(v for k, v in vars(r).items() if k not in skip) for r in rows]


def test_the_three_demo_files_parse_to_the_same_rows() -> None:
    parsed = {ext: parse_roster(path) for ext, path in DEMO.items()}
    for ext, (rows, errors) in parsed.items():
        assert errors == [], ext
        assert len(rows) == 15, ext
    assert _content(parsed["csv"][0]) == _content(parsed["yaml"][0])
    assert _content(parsed["xlsx"][0]) == _content(parsed["yaml"][0])
    # Spreadsheet rows are numbered as Excel shows them: header 1, first data row 2.
    assert [r.row for r in parsed["csv"][0]][:2] == [2, 3]
    assert [r.row for r in parsed["xlsx"][0]][:2] == [2, 3]
    assert [r.row for r in parsed["yaml"][0]][:2] == [1, 2]


def test_demo_files_match_their_generator(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert DEMO["yaml"].read_text(encoding="utf-8") == gen.yaml_text()
    assert DEMO["csv"].read_bytes().decode("utf-8-sig") == gen.csv_text()
    assert DEMO["csv"].read_bytes().startswith(b"\xef\xbb\xbf")  # BOM, so Excel reads UTF-8
    gen.write_xlsx(tmp_path / "fresh.xlsx")
    assert _content(parse_roster(tmp_path / "fresh.xlsx")[0]) == _content(
        parse_roster(DEMO["xlsx"])[0]
    )


def test_shared_cells_are_filled_from_the_first_row() -> None:
    rows, _ = parse_roster(DEMO["csv"])
    last = rows[-1]
    assert last.l1_chief == PersonRef("刘建国", "13807991001", "@liujianguo:localhost")
    assert last.province == "江西省" and last.city == "萍乡市"
    assert last.l2_chief is not None and last.l2_chief.name == "李红梅"
    assert last.type is EnterpriseType.CONSTRUCTION


def test_yaml_person_mappings_lists_and_chinese_keys(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path / "forms.yaml",
        [
            {
                "县": "芦溪县",
                "业务领域": "道路货运",
                "企业名称": "甲公司",
                "企业类型": "道路货运企业",
                "企业负责人": {"name": "甲", "phone": 13800000001},
                "l2_members": [
                    {"姓名": "乙", "matrix_id": "@yi:localhost"},
                    "丙/13800000003",
                ],
                "ent_members": "丁/13800000004;戊/@wu:localhost\n己/+86 138-0000-0006",
            }
        ],
    )
    rows, errors = parse_roster(path)
    assert errors == []
    (row,) = rows
    assert row.ent_chief == PersonRef("甲", "13800000001")
    assert row.l2_members == (
        PersonRef("乙", None, "@yi:localhost"),
        PersonRef("丙", "13800000003"),
    )
    assert [p.name for p in row.ent_members] == ["丁", "戊", "己"]
    assert row.ent_members[2].phone == "13800000006"
    assert row.unit_kind is UnitKind.COUNTY and row.type is EnterpriseType.FREIGHT


def test_special_bodies_are_recognised_by_name(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path / "special.yaml",
        [
            {
                "province": "江西省",
                "county": "省交通执法局",
                "domain": "重点工程",
                "enterprise": "某高速公路建设项目",
                "type": "工程",
                "ent_chief": "甲/13800000001",
            }
        ],
    )
    rows, errors = parse_roster(path)
    assert errors == [] and rows[0].unit_kind is UnitKind.SPECIAL


def test_gbk_csv_from_excel_is_read(tmp_path: Path) -> None:
    rows = demo_rows()[:2]
    path = write_csv(tmp_path / "gbk.csv", rows, encoding="gb18030")
    parsed, errors = parse_roster(path)
    assert errors == [] and [r.enterprise for r in parsed] == ["芦溪汽车站", "宣风汽车站"]


def test_xlsx_title_row_and_row_numbers(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["芦溪县交通运输安全网格化管理名册"])  # a title above the header
    ws.append([c.header for c in COLUMNS])
    good = [
        "",
        "",
        "芦溪县",
        "",
        "",
        "",
        "",
        "道路货运",
        "",
        "",
        "",
        "甲公司",
        "货运",
        "甲/13800000001",
    ]
    ws.append(good)
    ws.append([*good[:11], "乙公司", "飞机", "乙/13800000002"])
    wb.save(tmp_path / "titled.xlsx")
    rows, errors = parse_roster(tmp_path / "titled.xlsx")
    assert [r.row for r in rows] == [3]
    assert [(e.row, "企业类型" in e.message) for e in errors] == [(4, True)]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("roster.docx", b"x", "不支持的文件类型"),  # .txt is Excel's Unicode text
        ("roster.xls", b"x", "不支持的文件类型"),
        ("broken.xlsx", b"not a zip", "不是有效的 Excel 文件"),
        ("broken.yaml", b"rows: [a, {b: 1", "不是有效的 YAML"),
        ("norows.yaml", b"county: x\n", "rows"),
        ("empty.yaml", b"rows: []\n", "没有数据行"),
        ("nohead.csv", "甲,乙\n1,2\n".encode(), "找不到表头"),
        (
            "cols.csv",
            "县,业务领域\n芦溪县,道路货运\n".encode(),
            "缺少必需的列：企业名称、企业类型、企业负责人",
        ),
        ("binary.csv", b"\xff\xfe\x00\x81\x00\xff" * 10, "编码"),
    ],
)
def test_whole_file_problems(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    rows, errors = parse_roster(path)
    assert rows == []
    assert len(errors) == 1 and expected in errors[0].message, errors
    assert str(errors[0]).startswith(("文件: ", "第1行: "))


def test_missing_file() -> None:
    _, errors = parse_roster(Path("/nonexistent/roster.csv"))
    assert "找不到文件" in errors[0].message


def test_unknown_columns_are_a_warning_and_yaml_typos_an_error(tmp_path: Path) -> None:
    path = tmp_path / "extra.csv"
    rows = demo_rows()[:1]
    write_csv(path, rows)
    text = path.read_bytes().decode("utf-8-sig").splitlines()
    text = [text[0] + ",备注,联系地址", text[1] + ",,南门"]
    path.write_text("\n".join(text), encoding="utf-8")
    parsed = read_roster(path)
    assert parsed.errors == []
    assert len(parsed.warnings) == 1 and "联系地址" in parsed.warnings[0]

    bad = dict(rows[0], l2_memebers=["甲/13800000001"])
    _, errors = parse_roster(write_yaml(tmp_path / "typo.yaml", [bad]))
    assert [(e.row, "l2_memebers" in e.message) for e in errors] == [(1, True)]


# --- validation: every problem listed, nothing written -------------------------------------


def _bad_rows() -> list[dict[str, Any]]:
    base = {"county": "芦溪县", "domain": "道路货运", "type": "货运"}
    return [
        # row 2: fine, sets the county's level-1 chief
        dict(
            base,
            l1_chief="张三/13800000001/@a1:localhost",
            enterprise="一号",
            ent_chief="甲/13800000011",
        ),
        dict(base, enterprise="二号"),  # 3: no enterprise chief
        dict(base, enterprise="三号", type="飞机", ent_chief="乙/13800000012"),  # 4
        dict(base, enterprise="四号", ent_chief="丙/13800000013"),  # 5
        dict(base, enterprise="四号", ent_chief="丙/13800000013"),  # 6: duplicate of 5
        dict(base, enterprise="五号", ent_chief="丁/@Bad Id:localhost"),  # 7
        dict(base, enterprise="六号", ent_chief="戊/13800000015", l2_members="己/12345"),  # 8
        dict(base, enterprise="七号", ent_chief="庚/13800000016", ent_members="赵六"),  # 9
        dict(
            base, enterprise="八号", ent_chief="辛/13800000017", l1_chief="李四/13800000009"
        ),  # 10
        dict(base, enterprise="九号", ent_chief="王五/@a1:localhost"),  # 11: @a1 is 张三
        dict(base, county="", enterprise="十号", ent_chief="壬/13800000018"),  # 12
        dict(base, domain="", enterprise="", ent_chief="癸/13800000019"),  # 13: two problems
    ]


EXPECTED_BAD = [
    (3, "缺少企业负责人"),
    (4, "企业类型「飞机」无法识别"),
    (6, "重复（第5行已有）"),
    (7, "Matrix 账号「@Bad Id:localhost」格式不对"),
    (8, "电话「12345」格式不对"),
    (9, "须填电话或 Matrix 账号"),
    (10, "「一级网格长」与第2行不一致"),
    (11, "在第2行是「张三」，此处是「王五」"),
    (12, "缺少县"),
    (13, "缺少业务领域"),
    (13, "缺少企业名称"),
]


async def test_every_bad_row_is_reported_and_nothing_written(db: Database, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bad.csv", _bad_rows())
    result = await import_roster(db, path)
    found = [(e.row, e.message) for e in result.errors]
    for row, fragment in EXPECTED_BAD:
        assert any(r == row and fragment in m for r, m in found), (row, fragment, found)
    assert len(found) == len(EXPECTED_BAD), found
    assert not result.applied and len(result.changes) == 0
    assert await count(db, AdminUnit) == 0 and await count(db, Person) == 0

    out = io.StringIO()
    assert await cmd_import(db, path, dry_run=False, out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("第3行: 缺少企业负责人")
    assert "未写入任何内容" in lines[-1]


async def test_bad_rows_in_yaml_are_numbered_by_entry(sqlite_db: Database, tmp_path: Path) -> None:
    result = await import_roster(sqlite_db, write_yaml(tmp_path / "bad.yaml", _bad_rows()))
    # YAML rows are counted from 1 (no header row), so each is one less than in the CSV.
    assert [e.row for e in result.errors] == [row - 1 for row, _ in EXPECTED_BAD]
    assert "重复（第4行已有）" in result.errors[2].message


# --- the demo county in the database --------------------------------------------------------


@pytest.mark.parametrize("ext", ["yaml", "csv", "xlsx"])
async def test_import_demo(db: Database, ext: str) -> None:
    result = await import_roster(db, DEMO[ext], today=D1)
    assert result.errors == [] and result.applied
    assert result.units == ["芦溪县"]

    state = await snapshot(db)
    assert state["units"] == {
        (UnitKind.PROVINCE.value, "江西省", None, True),
        (UnitKind.CITY.value, "萍乡市", "江西省", True),
        (UnitKind.COUNTY.value, "芦溪县", "萍乡市", True),
    }
    assert {(g[1], g[2]) for g in state["grids"]} == {
        (1, ""),
        (2, "道路客运"),
        (2, "道路货运"),
        (2, "港口航运"),
        (2, "渡口"),
        (2, "交通工程"),
    }
    assert len(state["enterprises"]) == 15
    assert {e[2] for e in state["enterprises"]} == {t.value for t in EnterpriseType}
    assert len(state["people"]) == 53 and all(p[3] for p in state["people"])
    assert len(state["assignments"]) == 16  # one enterprise is served by two members

    ganxi = await enterprise(db, "芦溪县赣西物流有限公司")
    assert ganxi.type == EnterpriseType.FREIGHT and ganxi.created_on == D1
    assert ("周宏伟", RoleKind.ENT_CHIEF, ganxi.name) in state["roles"]
    assert ("吴丽华", RoleKind.ENT_MEMBER, ganxi.name) in state["roles"]
    assert ("易小军", ganxi.name) in state["assignments"]
    assert ("易小军", RoleKind.L2_MEMBER, "芦溪县二级网格·道路货运") in state["roles"]
    chief = await person(db, "周宏伟")
    assert (chief.phone, chief.matrix_id) == ("13807992011", "@zhouhongwei:localhost")

    # The office director (deputy head for safety) is also a level-2 chief.
    assert ("王志强", RoleKind.L1_OFFICE_DIRECTOR, "芦溪县一级网格") in state["roles"]
    assert ("王志强", RoleKind.L2_CHIEF, "芦溪县二级网格·道路客运") in state["roles"]
    # One member serves several enterprises.
    assert sum(1 for a in state["assignments"] if a[0] == "李文斌") == 3
    assert ("易凤英", "13807992004", None, True) in state["people"]

    async with db.transaction() as s:
        l1 = (await s.scalars(select(Grid).where(Grid.level == 1))).one()
        parents = set((await s.scalars(select(Grid.parent_id).where(Grid.level == 2))).all())
    assert l1.name == "芦溪县一级网格" and parents == {l1.id}


async def test_the_three_formats_give_the_same_state(db: Database) -> None:
    await import_roster(db, DEMO["yaml"], today=D1)
    before = await snapshot(db)
    for ext in ("csv", "xlsx", "yaml"):
        with recorded_writes(db) as writes:
            result = await import_roster(db, DEMO[ext], today=D2)
        assert result.errors == [] and len(result.changes) == 0, (ext, result.changes)
        assert writes == [], ext
    assert await snapshot(db) == before


async def test_second_import_reports_no_changes(db: Database) -> None:
    out = io.StringIO()
    assert await cmd_import(db, DEMO["csv"], dry_run=False, out=out) == 0
    assert "新增 / added（" in out.getvalue() and "已导入 / imported" in out.getvalue()
    out = io.StringIO()
    assert await cmd_import(db, DEMO["csv"], dry_run=False, out=out) == 0
    assert "没有变化" in out.getvalue() and "新增" not in out.getvalue()


# --- re-import: the diff ------------------------------------------------------------------


async def test_reimport_new_enterprise_departed_member_and_reassignment(
    db: Database, tmp_path: Path
) -> None:
    await import_roster(db, DEMO["yaml"], today=D1)
    rows = demo_rows()
    wuwei_before = await person(db, "吴伟")
    # 吴伟 leaves: his only enterprise goes to 周建华.
    row_of(rows, "芦溪县宣风至上埠公路改建工程")["l2_members"] = [
        "周建华/13807991043/@zhoujianhua:localhost"
    ]
    # 宏源 moves from 林志明 to 易小军; 林志明 takes a newly registered company.
    row_of(rows, "芦溪县宏源货运有限公司")["l2_members"] = [
        "易小军/13807991023/@yixiaojun:localhost"
    ]
    rows.append(
        {
            "county": "芦溪县",
            "domain": "道路货运",
            "l2_members": ["林志明/13807991024/@linzhiming:localhost"],
            "enterprise": "芦溪县安达货运有限公司",
            "type": "货运",
            "ent_chief": "钱进/13807992051/@qianjin:localhost",
        }
    )
    path = write_yaml(tmp_path / "v2.yaml", rows)

    result = await import_roster(db, path, today=D2)
    assert result.errors == [] and result.applied
    assert labels(result, "added", ChangeKind.ENTERPRISE) == [
        "芦溪县/芦溪县安达货运有限公司（道路货运企业，道路货运）"
    ]
    assert labels(result, "added", ChangeKind.PERSON) == ["钱进（13807992051，@qianjin:localhost）"]
    assert "芦溪县/芦溪县宏源货运有限公司：二级网格员分工 林志明 → 易小军" in labels(
        result, "changed", ChangeKind.ASSIGNMENT
    )
    assert "芦溪县/芦溪县宣风至上埠公路改建工程：二级网格员分工 吴伟 → 周建华" in labels(
        result, "changed", ChangeKind.ASSIGNMENT
    )
    assert "芦溪县二级网格·交通工程：二级网格员 吴伟、周建华 → 周建华" in labels(
        result, "changed", ChangeKind.ROLE
    )
    assert labels(result, "deactivated", ChangeKind.PERSON) == [f"吴伟（停用日期 {D2}）"]
    assert labels(result, "deactivated", ChangeKind.ENTERPRISE) == []

    # The departed member is kept, deactivated with a date; his history is closed, not deleted.
    wuwei = await person(db, "吴伟")
    assert wuwei.id == wuwei_before.id
    assert (wuwei.active, wuwei.deactivated_on) == (False, D2)
    async with db.transaction() as s:
        his = (await s.scalars(select(Assignment).where(Assignment.person_id == wuwei.id))).all()
        roles = (await s.scalars(select(Role).where(Role.person_id == wuwei.id))).all()
    assert [(a.since, a.until) for a in his] == [(D1, D2)]
    assert [(r.kind, r.until) for r in roles] == [(RoleKind.L2_MEMBER, D2)]

    hongyuan = await enterprise(db, "芦溪县宏源货运有限公司")
    async with db.transaction() as s:
        history = (
            await s.execute(
                select(Person.name, Assignment.since, Assignment.until)
                .join(Person, Person.id == Assignment.person_id)
                .where(Assignment.enterprise_id == hongyuan.id)
                .order_by(Assignment.id)
            )
        ).all()
    assert [tuple(h) for h in history] == [("林志明", D1, D2), ("易小军", D2, None)]

    # The new state is stable.
    with recorded_writes(db) as writes:
        again = await import_roster(db, path, today=D3)
    assert len(again.changes) == 0 and writes == []


async def test_removed_enterprise_is_deactivated_and_can_return(
    db: Database, tmp_path: Path
) -> None:
    await import_roster(db, DEMO["yaml"], today=D1)
    original = await enterprise(db, "芦溪县袁河砂石码头")
    rows = [r for r in demo_rows() if r["enterprise"] != "芦溪县袁河砂石码头"]
    result = await import_roster(db, write_yaml(tmp_path / "v2.yaml", rows), today=D2)
    assert labels(result, "deactivated", ChangeKind.ENTERPRISE) == ["芦溪县/芦溪县袁河砂石码头"]
    assert sorted(labels(result, "deactivated", ChangeKind.PERSON)) == [
        f"何小平（停用日期 {D2}）",
        f"廖永福（停用日期 {D2}）",
    ]
    gone = await enterprise(db, "芦溪县袁河砂石码头")
    assert (gone.active, gone.deactivated_on) == (False, D2)
    assert (await person(db, "罗永红")).active  # still serves 宣风港埠
    assert await count(db, Role, Role.enterprise_id == gone.id, Role.until.is_(None)) == 0
    assert await count(db, Role, Role.enterprise_id == gone.id) == 2  # kept as history

    # Back on the roster: the same row is reactivated, and its people with it.
    result = await import_roster(db, DEMO["yaml"], today=D3)
    assert labels(result, "added", ChangeKind.ENTERPRISE) == [
        "芦溪县/芦溪县袁河砂石码头（重新启用 / reactivated）"
    ]
    back = await enterprise(db, "芦溪县袁河砂石码头")
    assert (back.id, back.active, back.deactivated_on) == (original.id, True, None)
    assert (await person(db, "廖永福")).active
    assert await count(db, Role, Role.enterprise_id == back.id, Role.until.is_(None)) == 2


async def test_person_details_change_in_place(db: Database, tmp_path: Path) -> None:
    await import_roster(db, DEMO["yaml"], today=D1)
    zhangmin = await person(db, "张敏")
    yifengying = await person(db, "易凤英")
    rows = demo_rows()
    row_of(rows, "芦溪汽车站")["ent_members"] = ["张敏/13907990000/@zhangmin:localhost"]
    # Known by phone so far; now she has a Matrix account: the same person, not a new one.
    row_of(rows, "宣风汽车站")["ent_members"] = ["易凤英/13807992004/@yifengying:localhost"]
    # A type correction and a move to another domain.
    row_of(rows, "芦溪县武功山旅游船务有限公司")["type"] = "港口"
    row_of(rows, "芦溪县武功山旅游船务有限公司")["domain"] = "渡口"
    result = await import_roster(db, write_yaml(tmp_path / "v2.yaml", rows), today=D2)
    changed = labels(result, "changed")
    assert "张敏：电话 13807992002 → 13907990000" in changed
    assert "易凤英：Matrix 账号 （空） → @yifengying:localhost" in changed
    assert "芦溪县/芦溪县武功山旅游船务有限公司：企业类型 航运企业 → 港口码头" in changed
    assert "芦溪县/芦溪县武功山旅游船务有限公司：业务领域 港口航运 → 渡口" in changed
    assert labels(result, "added", ChangeKind.PERSON) == []
    assert (await person(db, "张敏")).id == zhangmin.id
    assert (await person(db, "易凤英")).matrix_id == "@yifengying:localhost"
    assert (await person(db, "易凤英")).id == yifengying.id


async def test_dry_run_writes_nothing(db: Database, tmp_path: Path) -> None:
    result = await import_roster(db, DEMO["xlsx"], dry_run=True, today=D1)
    assert not result.applied and len(result.changes.added) > 100
    assert await count(db, AdminUnit) == 0 and await count(db, Person) == 0

    await import_roster(db, DEMO["xlsx"], today=D1)
    before = await snapshot(db)
    rows = [r for r in demo_rows() if r["domain"] != "交通工程"]
    path = write_yaml(tmp_path / "v2.yaml", rows)
    out = io.StringIO()
    assert await cmd_import(db, path, dry_run=True, out=out) == 0
    text = out.getvalue()
    assert "停用 / deactivated（" in text and "芦溪县二级网格·交通工程" in text
    assert text.rstrip().endswith("试运行，未写入 / dry run, nothing written")
    assert await snapshot(db) == before


async def test_import_touches_only_the_counties_in_the_file(db: Database, tmp_path: Path) -> None:
    await import_roster(db, DEMO["yaml"], today=D1)
    luxi = await snapshot(db, "芦溪县")
    shared = "易小军/13807991023/@yixiaojun:localhost"  # serves in both counties
    lianhua = [
        {
            "province": "江西省",
            "city": "萍乡市",
            "county": "莲花县",
            "l1_chief": "欧阳明/13807993001/@ouyangming:localhost",
            "domain": "道路货运",
            "l2_chief": "贺文/13807993002/@hewen:localhost",
            "l2_members": [shared],
            "enterprise": "莲花县顺风物流有限公司",
            "type": "货运",
            "ent_chief": "段雪/13807993003/@duanxue:localhost",
        },
        {
            "county": "莲花县",
            "domain": "道路货运",
            "l2_members": ["尹波/13807993004/@yinbo:localhost"],
            "enterprise": "莲花县安捷运输有限公司",
            "type": "货运",
            "ent_chief": "甘露/13807993005/@ganlu:localhost",
        },
    ]
    result = await import_roster(db, write_yaml(tmp_path / "lianhua.yaml", lianhua), today=D2)
    assert result.units == ["莲花县"] and result.changes.deactivated == []
    assert labels(result, "added", ChangeKind.UNIT) == ["莲花县（县）"]  # 萍乡市 is reused
    assert await snapshot(db, "芦溪县") == luxi

    # 莲花县 drops an enterprise and 易小军: he stays active, since he still serves 芦溪县.
    result = await import_roster(db, write_yaml(tmp_path / "lianhua2.yaml", lianhua[1:]), today=D3)
    assert labels(result, "deactivated", ChangeKind.ENTERPRISE) == ["莲花县/莲花县顺风物流有限公司"]
    assert (await person(db, "易小军")).active
    # The county- and domain-level cells were only on the dropped row, so those people go too.
    assert "莲花县一级网格·一级网格长：欧阳明" in labels(result, "deactivated", ChangeKind.ROLE)
    assert sorted(labels(result, "deactivated", ChangeKind.PERSON)) == sorted(
        f"{name}（停用日期 {D3}）" for name in ("段雪", "欧阳明", "贺文")
    )
    assert await snapshot(db, "芦溪县") == luxi


async def test_an_existing_phone_shared_by_two_people_needs_a_matrix_id(
    sqlite_db: Database, tmp_path: Path
) -> None:
    base = {"county": "芦溪县", "domain": "道路货运", "type": "货运"}
    first = [
        dict(base, enterprise="甲", ent_chief="张三/13800000001/@zs:localhost"),
        dict(base, enterprise="乙", ent_chief="李四/13800000001/@ls:localhost"),
    ]
    assert (await import_roster(sqlite_db, write_yaml(tmp_path / "a.yaml", first))).applied
    # Another county's file names the phone alone: which of the two is meant?
    second = [dict(base, county="莲花县", enterprise="丙", ent_chief="王五/13800000001")]
    result = await import_roster(sqlite_db, write_yaml(tmp_path / "b.yaml", second))
    assert [e.row for e in result.errors] == [1] and not result.applied
    assert "数据库中有多人使用电话" in result.errors[0].message
    assert await count(sqlite_db, Enterprise) == 2


# --- size -----------------------------------------------------------------------------------


def _big_rows(n: int = 3000, counties: int = 10) -> list[dict[str, Any]]:
    domains = [("道路客运", "客运"), ("道路货运", "货运"), ("港口航运", "港口"), ("渡口", "渡口")]
    rows: list[dict[str, Any]] = []
    per = n // counties
    for c in range(counties):
        for i in range(per):
            domain, etype = domains[i % len(domains)]
            k = c * per + i
            row: dict[str, Any] = {
                "city": "测试市",
                "county": f"测试{c}县",
                "domain": domain,
                "enterprise": f"测试{c}县第{i}号企业",
                "type": etype,
                "ent_chief": f"负责人{k}/139{k:08d}",
                "ent_members": [f"安全员{k}/137{k:08d}", f"业务员{k}/@e{k}:localhost"],
                "l2_members": [f"网格员{c}-{i % 4}-{i % 9}/@m{c}x{i % 4}x{i % 9}:localhost"],
            }
            if i < len(domains):
                row["l2_chief"] = f"副局长{c}-{i}/@d{c}x{i}:localhost"
            if i == 0:
                row["l1_chief"] = f"局长{c}/@c{c}:localhost"
            rows.append(row)
    return rows


async def test_a_3000_row_file_imports_whole_and_reimports_as_no_change(
    db: Database, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "big.csv", _big_rows())
    result = await import_roster(db, path, today=D1)
    assert result.errors == [] and result.applied
    assert await count(db, Enterprise) == 3000
    again = await import_roster(db, path, today=D2)
    assert len(again.changes) == 0


# --- staff changes confirmed in chat ----------------------------------------------------------


async def _demo_with_staff_change(db: Database, text: str) -> int:
    """The demo county imported on D1, then a change of 赣西物流's staff confirmed in chat on D2
    (what /staff and /staff-confirm write); returns the change's id."""
    await import_roster(db, DEMO["yaml"], today=D1)
    ent = await enterprise(db, "芦溪县赣西物流有限公司")
    day = D2
    async with db.transaction() as s:
        items = declare(text, await staff_changes.enterprise_staff(s, ent.id))
        await staff_changes.apply(s, ent.id, items, day)
        change = StaffChange(
            enterprise_id=ent.id,
            room_id="!ent:localhost",
            requested_by="@zhouhongwei:localhost",
            request_event_id="$declared",
            items=items,
            status="confirmed",
            decided_by="@yixiaojun:localhost",
            effective_on=day,
        )
        s.add(change)
        await s.flush()
        return change.id


async def _open_roles(db: Database, name: str) -> set[str]:
    async with db.transaction() as s:
        rows = await s.scalars(
            select(Role.kind)
            .join(Person, Person.id == Role.person_id)
            .where(Person.name == name, Role.until.is_(None))
        )
        return set(rows.all())


async def test_an_old_file_cannot_undo_a_staff_change_confirmed_in_chat(
    db: Database, tmp_path: Path
) -> None:
    code = await _demo_with_staff_change(db, "离开 吴丽华；加入 企业网格员 钱进 @qianjin:localhost")
    before = await snapshot(db)

    # The office imports the file it had: refused, nothing written, the change stands.
    stale = await import_roster(db, DEMO["yaml"], today=D3)
    assert not stale.applied and len(stale.errors) == 1
    error = str(stale.errors[0])
    assert f"S-{code}（{D2}）" in error and "--file-wins" in error
    assert "钱进 已加入任企业网格员，文件里没有" in error
    assert "吴丽华 已离开（企业网格员），文件里仍有" in error
    assert await snapshot(db) == before
    out = io.StringIO()
    assert await cmd_import(db, DEMO["yaml"], dry_run=True, out=out) == 1
    assert "未写入任何内容" in out.getvalue()

    # --file-wins lets the file undo it, says so, and settles the change.
    wins = await import_roster(db, DEMO["yaml"], today=D3, file_wins=True)
    assert wins.applied
    assert any(f"按文件撤销了群里确认的人员变动 S-{code}" in w for w in wins.warnings)
    assert await _open_roles(db, "钱进") == set()
    assert await _open_roles(db, "吴丽华") == {RoleKind.ENT_MEMBER}
    async with db.transaction() as s:
        settled = await s.get(StaffChange, code)
        assert settled is not None and settled.reconciled_on == D3
    assert (await import_roster(db, DEMO["yaml"], today=D3)).applied  # settled: no error again


async def test_a_file_that_has_the_staff_change_settles_it_and_rules_after(
    db: Database, tmp_path: Path
) -> None:
    code = await _demo_with_staff_change(db, "加入 企业网格员 钱进 13900000123")
    rows = demo_rows()
    row = row_of(rows, "芦溪县赣西物流有限公司")
    row["ent_members"] = [*row["ent_members"], "钱进/13900000123"]
    result = await import_roster(db, write_yaml(tmp_path / "v2.yaml", rows), today=D3)
    assert result.applied and not result.errors
    assert labels(result, "changed") == []  # the file only caught up with the chat
    async with db.transaction() as s:
        settled = await s.get(StaffChange, code)
        assert settled is not None and settled.reconciled_on == D3
    # Later the file drops him: an ordinary change now.
    result = await import_roster(db, DEMO["yaml"], today=D3)
    assert result.applied and await _open_roles(db, "钱进") == set()
