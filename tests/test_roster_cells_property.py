"""Property tests of the roster cell parser: whatever a cell holds (any Unicode text up to the
cell limit, control and zero-width characters, direction marks, full-width forms, template and
HTML syntax, Excel error values, YAML shapes), a row parses to a value or to per-cell errors,
never to an exception; and a whole file of such cells reads without one."""

from __future__ import annotations

import codecs
import csv
import io
import tempfile
import unicodedata
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import openpyxl
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from bot.roster.layout import COLUMNS
from bot.roster.parse import (
    CELL_MAX_CHARS,
    EXCEL_ERRORS,
    MAX_LEN,
    RosterRow,
    RowError,
    normalized_name,
    parse_cells,
    read_roster,
)

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEYS = [c.key for c in COLUMNS]
TRICKY = [
    "\u200b",  # zero-width space
    "\u200c",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\u200e",  # left-to-right mark
    "\u200f",  # right-to-left mark
    "\u202e",  # right-to-left override
    "\u2066",
    "\x00",
    "\x07",
    "\x1b[31m",
    "\r\n",
    "\t",
    "\u3000",  # ideographic space
    "\u00a0",
    "ＡＢＣ",
    "１３８００００００００",
    "＠ｚｈａｎｇ:ｌｏｃａｌｈｏｓｔ",
    "{{7*7}}",
    "{% raw %}",
    "${7*7}",
    "<script>alert(1)</script>",
    "<b>粗</b>&amp;",
    "=1+1",
    "+86 138-0000-0001",
    "/",
    "；",
    ";",
    "@",
    "°",
    "芦溪汽车站",
    "有限公司",
    "甲/13800000001",
    "乙/13800000002/@yi:localhost",
    *sorted(EXCEL_ERRORS),
]
# Any Unicode text but lone surrogates, which no file decodes to (UTF-8, UTF-16 and XML all
# refuse them), with tricky fragments mixed in.
plain = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
tricky_text = st.lists(st.one_of(plain, st.sampled_from(TRICKY)), max_size=8).map("".join)
long_text = st.integers(CELL_MAX_CHARS - 5, CELL_MAX_CHARS + 5).map(lambda n: "芦" * n)
texts = st.one_of(tricky_text, tricky_text, tricky_text, long_text)
values = st.one_of(
    texts,
    st.none(),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.dates(),
    st.lists(st.one_of(texts, st.integers()), max_size=4),
    st.dictionaries(
        st.sampled_from(["name", "phone", "姓名", "matrix_id", "x"]), texts, max_size=3
    ),
)
BASE = {
    "county": "芦溪县",
    "domain": "道路货运",
    "enterprise": "甲公司",
    "type": "货运",
    "ent_chief": "甲/13800000001",
}


def check(parsed: RosterRow | None, errors: list[RowError], n: int = 2) -> None:
    """A row or per-cell errors, each one line naming the row."""
    assert (parsed is None) == bool(errors)
    for error in errors:
        assert isinstance(error, RowError) and error.row == n
        assert error.message and "\n" not in str(error) and "\r" not in str(error)
    if parsed is None:
        return
    for key in ("county", "domain", "enterprise", "province", "city"):
        name = getattr(parsed, key) or ""
        assert name == normalized_name(name), key
        assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in name), key
        assert len(name) <= MAX_LEN[key]
        assert name.upper() not in EXCEL_ERRORS
    for _, person in parsed.people():
        assert person.name == normalized_name(person.name) and person.name
        assert person.phone or person.matrix_id


@SETTINGS
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=len(KEYS)))
@example({"enterprise": "{{7*7}}<b>公司</b>"})
@example({"enterprise": "芦溪汽车站\u200b", "ent_chief": "张敏\u200b/１３８０００００００１"})
@example({"enterprise": "\u202e站车汽溪芦"})
@example({"ent_members": "#REF!"})
@example({"l2_members": [["nested"]]})
@example({"ent_members": 10**5000})
def test_any_cells_parse_to_a_row_or_per_cell_errors(cells: dict[str, Any]) -> None:
    check(*parse_cells(BASE | cells, refs={k: f"X{k}" for k in cells}))


@SETTINGS
@given(st.sampled_from(["county", "domain", "enterprise"]), tricky_text)
def test_a_name_is_kept_literally_once_normalized(key: str, name: str) -> None:
    parsed, errors = parse_cells(BASE | {key: name})
    check(parsed, errors)
    if parsed is not None:
        # Template and markup syntax stays text: nothing evaluates it.
        assert getattr(parsed, key) == normalized_name(name)


@SETTINGS
@given(tricky_text, st.sampled_from([*TRICKY[:5], "\u3000", " "]))
def test_names_that_differ_only_in_invisible_characters_are_one(name: str, noise: str) -> None:
    clean, _ = parse_cells(BASE | {"enterprise": name})
    noisy, _ = parse_cells(BASE | {"enterprise": noise + name + noise})
    if clean is not None and noisy is not None:
        assert clean.enterprise == noisy.enterprise


@SETTINGS
@given(st.sampled_from(KEYS), st.sampled_from(sorted(EXCEL_ERRORS)))
def test_an_excel_error_value_is_refused_in_any_column(key: str, value: str) -> None:
    parsed, errors = parse_cells(BASE | {key: value}, refs={key: "Q7"})
    assert parsed is None
    assert any("单元格 Q7" in e.message and value in e.message for e in errors), errors


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(tricky_text, min_size=len(KEYS), max_size=len(KEYS)), max_size=4),
    st.sampled_from(["utf-8-sig", "utf-16", "gb18030"]),
    st.sampled_from([",", "\t"]),
)
def test_a_table_of_any_cells_reads_without_an_exception(
    rows: list[list[str]], encoding: str, delimiter: str
) -> None:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, delimiter=delimiter)
    writer.writerow([c.header for c in COLUMNS])
    writer.writerows(rows)
    try:
        data = buf.getvalue().encode(encoding)
    except UnicodeEncodeError:
        data = buf.getvalue().encode("utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "any.csv"
        path.write_bytes(data)
        parsed = read_roster(path)
    assert parsed.rows or parsed.errors or not any(any(r) for r in rows)
    for error in parsed.errors:
        assert "\n" not in str(error)


@settings(max_examples=60, deadline=None)
@given(
    st.binary(max_size=2000),
    st.sampled_from(["x.xlsx", "x.csv", "x.txt", "x.yaml"]),
    st.sampled_from([b"", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, b"PK\x03\x04", b"rows:\n"]),
)
@example(b"\x00" * 10, "x.xlsx", b"PK\x03\x04")
@example(b"- [1, 2", "x.yaml", b"rows:\n")
def test_any_bytes_read_without_an_exception(data: bytes, name: str, prefix: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(prefix + data)
        parsed = read_roster(path)
    assert parsed.rows or parsed.errors


def test_dates_and_numbers_are_text() -> None:
    parsed, errors = parse_cells(BASE | {"enterprise": 2026, "county": date(2026, 1, 5)})
    assert errors == [] and parsed is not None
    assert (parsed.enterprise, parsed.county) == ("2026", "2026-01-05")


def _sheet_xlsx(rows: list[list[str]]) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append([c.header for c in COLUMNS])
    for row in rows:
        ws.append([ILLEGAL_CHARACTERS_RE.sub("", v) for v in row])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(tricky_text, min_size=len(KEYS), max_size=len(KEYS)), max_size=3),
    st.integers(0, 10_000),
    st.binary(max_size=40),
)
def test_a_workbook_of_any_cells_damaged_anywhere_reads_without_an_exception(
    rows: list[list[str]], at: int, junk: bytes
) -> None:
    data = _sheet_xlsx(rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "any.xlsx"
        path.write_bytes(data)
        assert read_roster(path).errors is not None  # whole: rows or per-cell errors
        # The same workbook with junk spliced into its sheet's XML.
        with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(path, "w") as zout:
            for info in zin.infolist():
                part = zin.read(info.filename)
                if info.filename == "xl/worksheets/sheet1.xml":
                    cut = at % (len(part) + 1)
                    part = part[:cut] + junk + part[cut:]
                zout.writestr(info.filename, part)
        parsed = read_roster(path)
    assert parsed.rows or parsed.errors or not any(any(r) for r in rows)
    for error in parsed.errors:
        assert "\n" not in str(error)
