"""Plain functions behind the admin room's roster files: is a file a roster at all, the
annotated copy of a file with errors (workbook, CSV, or a workbook of a YAML file's rows), the
export workbook, the full diff as text."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font, PatternFill

from bot.roster.apply import ImportResult
from bot.roster.commands import format_changes
from bot.roster.layout import COLUMNS, column_key
from bot.roster.parse import (
    CSV_SUFFIXES,
    HEADER_SEARCH_ROWS,
    XLSX_SUFFIXES,
    YAML_SUFFIXES,
    RowError,
    mapping_as_text,
)
from storage.admins import EnterpriseLine, PersonCell

__all__ = ["XLSX_SUFFIXES"]
ROSTER_SUFFIXES = (*XLSX_SUFFIXES, *CSV_SUFFIXES, *YAML_SUFFIXES)
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MIME = "text/csv"
ERROR_HEADER = "错误 / error"
BAD_FILL = PatternFill("solid", start_color="FFC7CE", end_color="FFC7CE")
_ZIP = b"PK\x03\x04"
_TEXT_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")


def suffix_of(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def looks_like_roster_name(name: str) -> bool:
    return suffix_of(name) in ROSTER_SUFFIXES


def refusal(name: str, data: bytes, limit: int) -> str | None:
    """Why ``data`` (named ``name``) is not a roster file to read, as a template name's tail
    (``empty``, ``too_big``, ``not_roster``, ``not_xlsx``, ``binary``); None when it may be."""
    suffix = suffix_of(name)
    if suffix not in ROSTER_SUFFIXES:
        return "not_roster"
    if not data:
        return "empty"
    if len(data) > limit:
        return "too_big"
    if suffix in XLSX_SUFFIXES:
        return None if data.startswith(_ZIP) else "not_xlsx"
    head = data[:4096]
    if b"\x00" in head and not head.startswith(_TEXT_BOMS):
        return "binary"
    if data.startswith(_ZIP):
        return "binary"
    return None


# --- the annotated workbook ----------------------------------------------------------------


def _header_row(ws: object, rows: int = 20) -> int:
    """The row holding the roster's headers (a title row above it is allowed)."""
    best, found = 1, 0
    for r in range(1, rows + 1):
        known = sum(
            1
            for c in ws[r]  # type: ignore[index]
            if isinstance(c.value, str) and column_key(c.value) is not None
        )
        if known > found:
            best, found = r, known
    return best


def annotated_workbook(data: bytes, errors: Sequence[RowError]) -> bytes:
    """The uploaded workbook, its first sheet with a column 错误 / error filled on each row
    with an error and those rows highlighted; errors of the whole file go on the header row."""
    wb = load_workbook(io.BytesIO(data))
    ws = wb.worksheets[0]
    header = _header_row(ws)
    col = ws.max_column + 1
    head = ws.cell(row=header, column=col, value=ERROR_HEADER)
    head.font = Font(bold=True, color="9C0006")
    by_row: dict[int, list[str]] = {}
    for err in errors:
        by_row.setdefault(err.row or header, []).append(err.message)
    for row, messages in sorted(by_row.items()):
        cell = ws.cell(row=row, column=col)
        cell.value = "；".join(messages) if row != header else "；".join([ERROR_HEADER, *messages])
        if row != header:
            for c in range(1, col + 1):
                ws.cell(row=row, column=c).fill = BAD_FILL
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def error_rows(data: bytes) -> dict[int, str]:
    """Read back an annotated workbook: row → its 错误 / error cell (for tests and checks)."""
    ws = load_workbook(io.BytesIO(data)).worksheets[0]
    header = _header_row(ws)
    col = next(c.column for c in ws[header] if isinstance(c.value, str) and c.value == ERROR_HEADER)
    return {
        r: str(v)
        for r in range(header + 1, ws.max_row + 1)
        if (v := ws.cell(row=r, column=col).value)
    }


# --- the annotated copy of any roster file -------------------------------------------------


@dataclass(frozen=True)
class Annotated:
    name: str
    mimetype: str
    data: bytes
    kind: str  # what the reply calls it: xlsx, csv, yaml (a workbook of a YAML file's rows)


def annotated(name: str, data: bytes, errors: Sequence[RowError]) -> Annotated | None:
    """The file sent back with its errors marked, or None when no error names a row (the
    file as a whole could not be read: the list says why)."""
    if not any(e.row for e in errors):
        return None
    suffix, stem = suffix_of(name), Path(name).stem
    if suffix in XLSX_SUFFIXES:
        return Annotated(
            f"{stem}-错误标注.xlsx", XLSX_MIME, annotated_workbook(data, errors), "xlsx"
        )
    if suffix in CSV_SUFFIXES:
        return Annotated(
            f"{stem}-错误标注{suffix}", CSV_MIME, annotated_csv(data, errors, suffix), "csv"
        )
    if suffix in YAML_SUFFIXES:
        # A workbook rather than YAML with comments: the office works in Excel, and a sheet
        # with the bad rows marked red is what it can fix without knowing YAML; it is in the
        # import format, so the fixed workbook can be uploaded as it is.
        book = yaml_rows_workbook(data, errors)
        if book is not None:
            return Annotated(f"{stem}-错误标注.xlsx", XLSX_MIME, book, "yaml")
    return None


def _text_codec(data: bytes) -> tuple[str, bytes]:
    """The codec the import read ``data`` with (bot.roster.parse._decode) and its BOM, so
    the annotated copy opens as the original did (a GBK CSV stays GBK for Excel)."""
    for bom, codec in (
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
        (codecs.BOM_UTF8, "utf-8"),
    ):
        if data.startswith(bom):
            return codec, bom
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "gb18030", b""
    return "utf-8", b""


def _decoded(data: bytes) -> tuple[str, str, bytes]:
    codec, bom = _text_codec(data)
    return data[len(bom) :].decode(codec), codec, bom


def _best_header(records: Sequence[Sequence[Any]]) -> int:
    """1-based: the record with the most known headers among the first few (as the import)."""
    best, found = 1, 0
    for i, rec in enumerate(records[:HEADER_SEARCH_ROWS], start=1):
        known = sum(1 for c in rec if isinstance(c, str) and column_key(c) is not None)
        if known > found:
            best, found = i, known
    return best


def annotated_csv(data: bytes, errors: Sequence[RowError], suffix: str = ".csv") -> bytes:
    """The uploaded CSV with a last column 错误 / error filled on each bad record (errors of
    the whole file on the header row), in the file's own encoding, delimiter and line ends;
    every other cell as it was."""
    text, codec, bom = _decoded(data)
    head = "\n".join(text[:8192].splitlines()[:HEADER_SEARCH_ROWS])
    tabs = suffix == ".tsv" or head.count("\t") > head.count(",")
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t" if tabs else ","))
    header = _best_header(records)
    width = max((len(r) for r in records[header - 1 :]), default=0)
    notes: dict[int, list[str]] = {}
    for err in errors:
        row = err.row if 0 < err.row <= len(records) else header
        notes.setdefault(row, []).append(err.message)
    out = io.StringIO(newline="")
    writer = csv.writer(
        out, delimiter="\t" if tabs else ",", lineterminator="\r\n" if "\r\n" in text else "\n"
    )
    for i, rec in enumerate(records, start=1):
        if i < header or (not rec and i not in notes):
            writer.writerow(rec)
            continue
        note = notes.get(i, [])
        cells = [*rec, *[""] * (width - len(rec))]
        writer.writerow([*cells, "；".join([ERROR_HEADER, *note] if i == header else note)])
    return bom + out.getvalue().encode(codec)


def _cell(value: Any) -> Any:
    """A YAML value as a roster cell: people lists joined with ；, a person mapping as
    姓名/电话/@账号, numbers and dates as they are."""
    if value is None or isinstance(value, int | float | date | datetime):
        return value
    if isinstance(value, list):
        return "；".join(str(_cell(v)) for v in value if v is not None)
    if isinstance(value, dict):
        return mapping_as_text(value)
    return str(value)


def yaml_rows_workbook(data: bytes, errors: Sequence[RowError]) -> bytes | None:
    """A YAML roster's rows as a workbook in the import format (keys this import does not
    know keep their own column), its 错误 / error column filled: YAML row n is sheet row
    n + 1. None when the file holds no rows: list."""
    text, _, _ = _decoded(data)
    try:
        loaded = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return None
    rows = loaded.get("rows") if isinstance(loaded, dict) else loaded
    if not isinstance(rows, list):
        return None
    headers = [c.header for c in COLUMNS]
    by_key = {c.key: c.header for c in COLUMNS}
    lines: list[dict[str, Any]] = []
    for item in rows:
        line: dict[str, Any] = {}
        for k, v in item.items() if isinstance(item, dict) else ():
            key = column_key(str(k))
            header = by_key[key] if key is not None else str(k)
            if header not in headers:
                headers.append(header)
            line[header] = _cell(v)
        lines.append(line)
    wb = Workbook()
    ws = wb.active
    ws.title = "网格名册"
    ws.append(headers)
    for line in lines:
        ws.append([line.get(h) for h in headers])
    for column in ws.columns:
        ws.column_dimensions[column[0].column_letter].width = 18
    plain = io.BytesIO()
    wb.save(plain)
    shifted = [RowError(e.row + 1 if e.row else 0, e.message) for e in errors]
    return annotated_workbook(plain.getvalue(), shifted)


# --- export --------------------------------------------------------------------------------

_PEOPLE_KIND = {
    "l1_chief": "l1_chief",
    "l1_office_director": "l1_office_director",
    "l1_office_members": "l1_office_member",
    "l2_chief": "l2_chief",
    "l2_office_members": "l2_office_member",
    "l2_members": "l2_member",
    "ent_chief": "ent_chief",
    "ent_members": "ent_member",
}
_UNIT_KIND = {"county": "县", "special": "省直"}


def person_text(p: PersonCell) -> str:
    return "/".join(x for x in (p.name, p.phone, p.matrix_id) if x)


def _people(cells: Iterable[PersonCell]) -> str:
    return "；".join(person_text(p) for p in cells)


def export_workbook(lines: Sequence[EnterpriseLine]) -> bytes:
    """The roster in the import format: one row per enterprise, every cell filled (county- and
    domain-level cells repeat identically, which the import accepts)."""
    wb = Workbook()
    ws = wb.active
    ws.title = "网格名册"
    ws.append([c.header for c in COLUMNS])
    for line in lines:
        row: list[object] = []
        for c in COLUMNS:
            if c.key in _PEOPLE_KIND:
                row.append(_people(line.people.get(_PEOPLE_KIND[c.key], [])) or None)
            elif c.key == "unit_kind":
                row.append(_UNIT_KIND.get(line.unit_kind, "县"))
            elif c.key == "county":
                row.append(line.county)
            elif c.key in ("longitude", "latitude"):
                row.append(getattr(line, c.key))
            else:
                row.append(getattr(line, c.key, None) or None)
        ws.append(row)
    for column in ws.columns:
        ws.column_dimensions[column[0].column_letter].width = 18
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


# --- the diff ------------------------------------------------------------------------------


def diff_text(name: str, result: ImportResult) -> str:
    lines = [
        f"名册 / roster: {name}，{result.rows} 行 / rows，范围 / scope: {'、'.join(result.units)}"
    ]
    lines += [f"注意 / note: {w}" for w in result.warnings]
    lines += format_changes(result.changes, limit=None) or ["没有变化 / no changes"]
    return "\n".join(lines) + "\n"


def counts(result: ImportResult) -> dict[str, int]:
    """新增 / 变更 / 停用 / 重新启用: reactivations are changes whose label says so."""
    reactivated = sum(1 for c in result.changes.changed if "重新启用" in str(c))
    reactivated += sum(1 for c in result.changes.added if "重新启用" in str(c))
    return {
        "added": len(result.changes.added)
        - sum(1 for c in result.changes.added if "重新启用" in str(c)),
        "changed": len(result.changes.changed)
        - sum(1 for c in result.changes.changed if "重新启用" in str(c)),
        "deactivated": len(result.changes.deactivated),
        "reactivated": reactivated,
    }


def first_lines(result: ImportResult, n: int = 12) -> list[str]:
    return format_changes(result.changes, limit=3)[:n]
