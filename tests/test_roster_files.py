"""Roster files under faults and bad input: limits before parsing, damaged workbooks, Excel
formulas and error values, invisible and full-width characters, near-duplicates, UTF-16."""

from __future__ import annotations

import codecs
import csv
import io
import time
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import select, update

from bot.config import Limits
from bot.roster.apply import ChangeKind, import_roster
from bot.roster.layout import COLUMNS
from bot.roster.parse import near_key, normalized_name, read_roster
from storage.db import Database
from storage.models import AdminUnit, Enterprise, Person
from tests.test_roster_import import DEMO, _big_rows, count, demo_rows, write_csv, write_yaml

HEADERS = [c.header for c in COLUMNS]
COL = {c.key: i for i, c in enumerate(COLUMNS)}  # column index (0-based) per key
SHEET = "xl/worksheets/sheet1.xml"


def table_row(enterprise: str, chief: str = "甲/13800000001", **cells: str) -> list[str]:
    row = [""] * len(COLUMNS)
    values = {"county": "芦溪县", "domain": "道路货运", "type": "货运"} | cells
    values |= {"enterprise": enterprise, "ent_chief": chief}
    for key, value in values.items():
        row[COL[key]] = value
    return row


def letter(key: str) -> str:
    return chr(ord("A") + COL[key])


def write_xlsx(path: Path, rows: list[list[Any]], patch: dict[str, str] | None = None) -> Path:
    """A workbook with the header and ``rows``; ``patch`` replaces whole ``<c r="…">`` elements
    of the sheet XML (a cached formula result, an error cell, as Excel writes them)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(HEADERS)
    for row in rows:
        ws.append(row)
    wb.save(path)
    if patch:
        rewrite_member(path, SHEET, lambda xml: _patch_cells(xml, patch))
    return path


def _patch_cells(xml: bytes, patch: dict[str, str]) -> bytes:
    text = xml.decode()
    for ref, element in patch.items():
        start = text.index(f'<c r="{ref}"')
        end = text.index("</c>", start) + len("</c>") if "</c>" in text[start:] else -1
        self_closing = text.index("/>", start) + 2
        end = self_closing if end == -1 or self_closing < end else end
        text = text[:start] + element + text[end:]
    return text.encode()


def rewrite_member(path: Path, member: str, change: Any) -> None:
    with zipfile.ZipFile(path) as zin:
        parts = [(i, zin.read(i.filename)) for i in zin.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info, data in parts:
            zout.writestr(info.filename, change(data) if info.filename == member else data)


def messages(path: Path, limits: Limits | None = None) -> list[str]:
    return [str(e) for e in read_roster(path, limits).errors]


# --- limits, checked before parsing ---------------------------------------------------------


def test_a_small_xlsx_that_unpacks_to_a_huge_sheet_is_refused_at_once(tmp_path: Path) -> None:
    """A few hundred kB that unpack to more than limits.roster_unpacked_bytes (50 MB by
    default): refused from the zip's directory, before openpyxl reads a byte of the sheet."""
    path = write_xlsx(tmp_path / "bomb.xlsx", [table_row("甲公司")])
    filler = b" " * 60_000_000  # whitespace between elements: valid XML, compresses to ~60 kB
    rewrite_member(path, SHEET, lambda xml: xml.replace(b"<sheetData>", b"<sheetData>" + filler))
    assert path.stat().st_size < 300_000
    started = time.monotonic()
    errors = messages(path)
    assert time.monotonic() - started < 2
    assert len(errors) == 1 and "解压后有 60.0 MB" in errors[0], errors
    assert "limits.roster_unpacked_bytes" in errors[0]


def test_file_size_and_row_limits_are_configurable(tmp_path: Path) -> None:
    big = write_csv(tmp_path / "big.csv", _big_rows(100, counties=1))
    assert big.stat().st_size > 10_000
    (error,) = messages(big, Limits(roster_file_bytes=10_000))
    assert error.startswith("文件: 文件有") and "limits.roster_file_bytes" in error
    assert read_roster(big, Limits(roster_file_bytes=big.stat().st_size)).errors == []

    rows = demo_rows()
    csv_path = write_csv(tmp_path / "demo.csv", rows)

    # 15 enterprises: fine at 16 rows (the header is row 1), refused at 15 in every format.
    xlsx = write_xlsx(tmp_path / "demo.xlsx", [table_row(f"企业{i}") for i in range(15)])
    yaml_path = write_yaml(tmp_path / "demo.yaml", rows)
    for path, fits in ((csv_path, 16), (xlsx, 16), (yaml_path, 15)):
        assert read_roster(path, Limits(roster_rows=fits)).errors == [], path
        (error,) = messages(path, Limits(roster_rows=fits - 1))
        assert f"名册超过 {fits - 1} 行" in error and "limits.roster_rows" in error, path


def test_rows_far_below_the_limit_are_not_skipped_silently(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "far.xlsx", [table_row("甲公司")])
    wb = openpyxl.load_workbook(path)
    ws = wb.active
    assert ws is not None
    ws.cell(5000, COL["enterprise"] + 1, "乙公司")
    wb.save(path)
    (error,) = messages(path, Limits(roster_rows=100))
    assert "名册超过 100 行" in error


# --- damaged files: one line each, never a traceback ------------------------------------------


@pytest.mark.parametrize(
    ("sheet", "expected"),
    [
        (b'<worksheet><sheetData><row r="1"><c r="A1"', "不是有效的 Excel 文件"),  # cut short
        (b"<worksheet><sheetData><row><c><v>1</v></c></row></sheetData>" * 2, "不是有效的 Excel"),
        (
            b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            b'<sheetData><row r="1"><c r="A1" t="n"><v>not a number</v></c></row></sheetData>'
            b"</worksheet>",
            "不是有效的 Excel 文件",
        ),
        (
            b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            b'<sheetData><row r="1"><c r="A1" t="s"><v>99</v></c></row></sheetData>'
            b"</worksheet>",  # a shared string that does not exist
            "不是有效的 Excel 文件",
        ),
    ],
)
def test_malformed_sheet_xml_is_one_line(tmp_path: Path, sheet: bytes, expected: str) -> None:
    path = write_xlsx(tmp_path / "broken.xlsx", [table_row("甲公司")])
    rewrite_member(path, SHEET, lambda _: sheet)
    parsed = read_roster(path)
    assert parsed.rows == []
    assert len(parsed.errors) == 1 and expected in parsed.errors[0].message, parsed.errors
    assert "\n" not in str(parsed.errors[0])


def test_a_merged_range_over_the_whole_sheet_costs_nothing(tmp_path: Path) -> None:
    """openpyxl's full load builds a cell for every cell of a merged range: A2:XFD1048576 is
    17 billion. Read-only reading cuts ranges to the rows and columns read."""
    path = write_xlsx(tmp_path / "merged.xlsx", [table_row("甲公司"), table_row("乙公司")])
    rewrite_member(
        path,
        SHEET,
        lambda xml: xml.replace(
            b"</sheetData>",
            b'</sheetData><mergeCells count="1"><mergeCell ref="A2:A1048576"/>'
            b'<mergeCell ref="R2:XFD1048576"/></mergeCells>',
        ),
    )
    started = time.monotonic()
    parsed = read_roster(path)
    assert time.monotonic() - started < 5
    assert parsed.errors == [] and [r.enterprise for r in parsed.rows] == ["甲公司", "乙公司"]


def test_overlapping_merged_ranges_are_refused(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "overlap.xlsx", [table_row("甲公司")])
    merges = b"".join(b'<mergeCell ref="A1:BL%d"/>' % n for n in range(2, 40))
    rewrite_member(
        path,
        SHEET,
        lambda xml: xml.replace(
            b"</sheetData>", b"</sheetData><mergeCells>" + merges + b"</mergeCells>"
        ),
    )
    (error,) = messages(path, Limits(roster_rows=10))
    assert "合并单元格互相重叠" in error


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("date.yaml", b"rows:\n  - county: 2026-02-30\n", "不是有效的 YAML"),
        ("deep.yaml", b"rows: " + b"[" * 5000 + b"]" * 5000, "YAML"),
        ("nul.csv", b"\xef\xbb\xbf\xe5\x8e\xbf,\x00\n", "找不到表头"),
        ("utf32.csv", codecs.BOM_UTF32_LE + "县".encode("utf-32-le"), "编码"),
    ],
)
def test_unreadable_text_files_are_one_line(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    parsed = read_roster(path)
    assert parsed.rows == [] and len(parsed.errors) == 1, parsed.errors
    assert expected in parsed.errors[0].message, parsed.errors


# --- Excel formulas and error values: refused per cell -----------------------------------------


def test_formula_cells_and_excel_errors_are_refused_with_their_cell(tmp_path: Path) -> None:
    ent = letter("enterprise")
    chief = letter("ent_chief")
    path = write_xlsx(
        tmp_path / "formulas.xlsx",
        [table_row("x"), table_row("x"), table_row("x"), table_row("丁公司", "#N/A")],
        patch={
            # As Excel saves them: a formula with its cached value, an error of a formula, and
            # a plain error value.
            f"{ent}2": f'<c r="{ent}2"><f>1+1</f><v>2</v></c>',
            f"{ent}3": f'<c r="{ent}3" t="e"><f>#REF!&amp;"公司"</f><v>#REF!</v></c>',
            f"{ent}4": f'<c r="{ent}4" t="e"><v>#DIV/0!</v></c>',
        },
    )
    result = read_roster(path)
    assert result.rows == []
    assert [str(e) for e in result.errors] == [
        f"第2行: 单元格 {ent}2（企业名称）是公式（=1+1），请复制后「选择性粘贴 → 数值」"
        f" / cell {ent}2 (enterprise name) is a formula: paste the values instead"
        " (Paste Special → Values)",
        f'第3行: 单元格 {ent}3（企业名称）是公式（=#REF!&"公司"），请复制后「选择性粘贴 → 数值」'
        f" / cell {ent}3 (enterprise name) is a formula: paste the values instead"
        " (Paste Special → Values)",
        f"第4行: 单元格 {ent}4（企业名称）是 Excel 错误值 #DIV/0!，请填写实际内容"
        f" / cell {ent}4 (enterprise name) holds the Excel error #DIV/0!; write the actual value",
        f"第5行: 单元格 {chief}5（企业负责人）是 Excel 错误值 #N/A，请填写实际内容"
        f" / cell {chief}5 (enterprise chief) holds the Excel error #N/A; write the actual value",
    ]


@pytest.mark.parametrize(
    "value", ["#REF!", "#N/A", "#VALUE!", "#DIV/0!", "#NAME?", "#NULL!", "#NUM!", " #n/a "]
)
def test_excel_error_values_saved_to_csv_are_refused(tmp_path: Path, value: str) -> None:
    rows = demo_rows()[:2]
    rows[1]["enterprise"] = value
    (error,) = messages(write_csv(tmp_path / "errors.csv", rows))
    assert error.startswith(f"第3行: 单元格 {letter('enterprise')}3（企业名称）是 Excel 错误值")


def test_yaml_cells_are_named_by_their_column(tmp_path: Path) -> None:
    rows = demo_rows()[:1]
    rows[0]["county"] = "#REF!"
    (error,) = messages(write_yaml(tmp_path / "err.yaml", rows))
    assert error.startswith("第1行: 「县」是 Excel 错误值 #REF!")


# --- names: normalized before they are compared -----------------------------------------------


def test_names_that_differ_only_in_invisible_or_full_width_characters_are_one(
    tmp_path: Path,
) -> None:
    rows = [
        table_row("芦溪汽车站\u200b"),
        table_row("芦溪汽车站", "乙/13800000002"),
        table_row("ＡＢＣ运输", "丙/13800000003"),
        table_row(" ABC运输\u3000", "丁/13800000004"),
    ]
    for path in (
        write_xlsx(tmp_path / "names.xlsx", rows),
        _write_rows_csv(tmp_path / "names.csv", rows),
    ):
        errors = messages(path)
        assert [e.split(" / ")[0] for e in errors] == [
            "第3行: 企业「芦溪汽车站」在芦溪县重复（第2行已有）",
            "第5行: 企业「ABC运输」在芦溪县重复（第4行已有）",
        ], path


def test_people_and_counties_are_normalized_too(tmp_path: Path) -> None:
    rows = [
        table_row("甲公司", "张敏\u200b/１３８０００００００１", county="芦溪县\u200d"),
        table_row("乙公司", "张敏/13800000001/＠zhangmin:localhost", county="芦溪县"),
    ]
    parsed = read_roster(_write_rows_csv(tmp_path / "people.csv", rows))
    assert parsed.errors == []
    assert {r.county for r in parsed.rows} == {"芦溪县"}
    chiefs = {r.ent_chief for r in parsed.rows}
    assert len(chiefs) == 1 and next(iter(chiefs)).matrix_id == "@zhangmin:localhost"


def test_direction_marks_are_refused_per_cell(tmp_path: Path) -> None:
    rows = [table_row("芦溪\u202e站车汽"), table_row("宣风站", "乙\u200f/13800000002")]
    errors = messages(_write_rows_csv(tmp_path / "rtl.csv", rows))
    what = "含有不可见的格式字符 {}（如方向标记），请删除"
    assert [e.split(" / ")[0] for e in errors] == [
        f"第2行: 单元格 {letter('enterprise')}2（企业名称）" + what.format("U+202E"),
        f"第3行: 单元格 {letter('ent_chief')}3（企业负责人）" + what.format("U+200F"),
    ]


async def test_stored_names_that_differ_only_so_are_matched_and_renamed(db: Database) -> None:
    """A database written by an earlier version may hold "芦溪汽车站\u200b" or "芦溪县\u200b":
    the file's clean name is the same enterprise / county, renamed, never a second one."""
    assert (await import_roster(db, DEMO["yaml"])).applied
    async with db.transaction() as s:
        station = (await s.scalars(select(Enterprise).where(Enterprise.name == "芦溪汽车站"))).one()
        await s.execute(
            update(Enterprise).where(Enterprise.id == station.id).values(name="芦溪汽车站\u200b")
        )
        await s.execute(
            update(AdminUnit).where(AdminUnit.name == "芦溪县").values(name="芦溪县\u200b")
        )
    result = await import_roster(db, DEMO["yaml"])
    assert result.applied and result.changes.added == [] and result.changes.deactivated == []
    assert {(c.kind, c.field, c.old, c.new) for c in result.changes.changed} == {
        (ChangeKind.UNIT, "名称", "芦溪县\u200b", "芦溪县"),
        (ChangeKind.ENTERPRISE, "名称", "芦溪汽车站\u200b", "芦溪汽车站"),
    }
    async with db.transaction() as s:
        again = (await s.scalars(select(Enterprise).where(Enterprise.name == "芦溪汽车站"))).one()
    assert again.id == station.id and again.active
    assert await count(db, AdminUnit) == 3


# --- near-duplicates: warnings -----------------------------------------------------------------


def test_near_duplicates_are_warnings(tmp_path: Path) -> None:
    rows = [
        table_row("赣西物流有限公司"),
        table_row("赣西物流有限责任公司", "乙/13800000002"),
        table_row("芦溪 汽车站", "丙/13800000003"),
        table_row("芦溪汽车站", "丁/13800000004"),
        table_row("宣风汽车站（南）", "戊/13800000005"),
        table_row("宣风汽车站南", "己/13800000006", domain="道路 货运"),
    ]
    parsed = read_roster(_write_rows_csv(tmp_path / "near.csv", rows))
    assert parsed.errors == [] and len(parsed.rows) == 6
    assert [w.split(" / ")[0] for w in parsed.warnings] == [
        "第3行: 企业「赣西物流有限责任公司」与第2行的「赣西物流有限公司」几乎相同"
        "（只差空格、标点或“有限公司”一类的后缀），请确认不是同一个",
        "第5行: 企业「芦溪汽车站」与第4行的「芦溪 汽车站」几乎相同"
        "（只差空格、标点或“有限公司”一类的后缀），请确认不是同一个",
        "第7行: 业务领域「道路 货运」与第2行的「道路货运」几乎相同"
        "（只差空格、标点或“有限公司”一类的后缀），请确认不是同一个",
        "第7行: 企业「宣风汽车站南」与第6行的「宣风汽车站(南)」几乎相同"
        "（只差空格、标点或“有限公司”一类的后缀），请确认不是同一个",
    ]


def test_near_key_rule() -> None:
    assert normalized_name("  ＡＢＣ\u200b  运输\n公司 ") == "ABC 运输 公司"
    assert near_key("ABC运输有限公司") == near_key("ａｂｃ 运输（有限责任公司）") == "abc运输公司"
    assert near_key("赣西物流股份有限公司") == near_key("赣西物流公司")
    assert near_key("赣西物流") != near_key("赣西物流公司")


async def test_a_renamed_enterprise_is_pointed_out(sqlite_db: Database, tmp_path: Path) -> None:
    assert (await import_roster(sqlite_db, DEMO["yaml"])).applied
    rows = demo_rows()
    for row in rows:
        if row["enterprise"] == "芦溪县赣西物流有限公司":
            row["enterprise"] = "芦溪县赣西物流有限责任公司"
    result = await import_roster(sqlite_db, write_yaml(tmp_path / "v2.yaml", rows))
    assert result.applied
    assert any(
        "新增的企业「芦溪县赣西物流有限责任公司」与停用的「芦溪县赣西物流有限公司」几乎相同" in w
        for w in result.warnings
    ), result.warnings


# --- encodings and YAML ------------------------------------------------------------------------


def _write_rows_csv(
    path: Path, rows: list[list[str]], encoding: str = "utf-8-sig", delimiter: str = ","
) -> Path:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, delimiter=delimiter)
    writer.writerow(HEADERS)
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def _unicode_text(path: Path, rows: list[dict[str, Any]]) -> Path:
    """What Excel's "Save as → Unicode text" writes: UTF-16LE with a BOM, tab-separated."""
    demo = write_csv(path.with_suffix(".tmp.csv"), rows)
    text = demo.read_bytes().decode("utf-8-sig")
    table = list(csv.reader(io.StringIO(text, newline="")))
    buf = io.StringIO(newline="")
    csv.writer(buf, delimiter="\t", lineterminator="\r\n").writerows(table)
    path.write_bytes(codecs.BOM_UTF16_LE + buf.getvalue().encode("utf-16-le"))
    return path


@pytest.mark.parametrize(
    ("name", "encoding"),
    [("unicode.txt", "excel"), ("utf16.csv", "utf-16"), ("bom.tsv", "utf-8-sig")],
)
def test_utf16_and_tab_separated_files_are_read(tmp_path: Path, name: str, encoding: str) -> None:
    rows = demo_rows()
    expected = read_roster(write_csv(tmp_path / "plain.csv", rows)).rows
    path = tmp_path / name
    if encoding == "excel":
        _unicode_text(path, rows)
    else:
        text = write_csv(tmp_path / "x.csv", rows).read_bytes().decode("utf-8-sig")
        if name.endswith(".tsv"):
            table = list(csv.reader(io.StringIO(text, newline="")))
            buf = io.StringIO(newline="")
            csv.writer(buf, delimiter="\t").writerows(table)
            text = buf.getvalue()
        path.write_bytes(text.encode(encoding))  # "utf-16" writes a BOM
    parsed = read_roster(path)
    assert parsed.errors == [], parsed.errors
    assert parsed.rows == expected


def test_yaml_ignores_a_remark_as_tables_do(tmp_path: Path) -> None:
    rows = demo_rows()[:2]
    rows[0]["备注"] = "新登记"
    rows[1]["remark"] = "moved"
    rows[1]["序号"] = 2
    parsed = read_roster(write_yaml(tmp_path / "remarks.yaml", rows))
    assert parsed.errors == [] and len(parsed.rows) == 2


def test_yaml_values_of_odd_shapes_are_per_cell_errors(tmp_path: Path) -> None:
    """Nested lists, sets and huge lists (YAML aliases make them cheap to write) are refused
    by their shape, before anything turns them into text."""
    path = tmp_path / "shapes.yaml"
    path.write_text(
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
        "rows:\n"
        "  - {county: 芦溪县, domain: 道路货运, enterprise: 甲, type: 货运,"
        " ent_chief: 甲/13800000001, ent_members: *e}\n"
        "  - {county: 芦溪县, domain: 道路货运, enterprise: 乙, type: 货运,"
        " ent_chief: 乙/13800000002, l2_members: [{name: 丙, phone: *e}]}\n"
        "  - {county: !!set {a, b}, domain: 道路货运, enterprise: 丙, type: 货运,"
        " ent_chief: 丙/13800000003}\n"
        "  - {county: 芦溪县, domain: 道路货运, enterprise: 丁, type: 货运,"
        f" ent_chief: [{', '.join(f'人{i}/138{i:08d}' for i in range(201))}]}}\n",
        encoding="utf-8",
    )
    started = time.monotonic()
    errors = messages(path)
    assert time.monotonic() - started < 2
    assert [e.split(" / ")[0] for e in errors] == [
        "第1行: 「企业网格员」的格式不对（应为文字）",
        "第2行: 「二级网格员」中的人员格式不对",
        "第3行: 「县」的格式不对（应为文字）",
        "第4行: 「企业负责人」超过 200 人",
    ]


def test_an_overlong_cell_is_refused_before_it_is_read(tmp_path: Path) -> None:
    rows = demo_rows()[:1]
    rows[0]["ent_members"] = "；".join(f"人{i}/138{i:08d}" for i in range(300))
    (error,) = messages(write_csv(tmp_path / "long.csv", rows))
    assert f"单元格 {letter('ent_members')}2（企业网格员）超过 4000 字" in error


async def test_nothing_is_stored_from_a_refused_file(db: Database, tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "f.xlsx",
        [table_row("x"), table_row("乙公司", "乙/13800000002")],
        patch={
            f"{letter('enterprise')}2": f'<c r="{letter("enterprise")}2"><f>1+1</f><v>2</v></c>'
        },
    )
    result = await import_roster(db, path)
    assert not result.applied and len(result.errors) == 1
    assert await count(db, Enterprise) == 0 and await count(db, Person) == 0
