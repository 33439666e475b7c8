"""Plain functions behind the admin room's roster files: is a file a roster at all, the
annotated workbook of a file with errors, the export workbook, the full diff as text."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font, PatternFill

from bot.roster.apply import ImportResult
from bot.roster.commands import format_changes
from bot.roster.layout import COLUMNS, column_key
from bot.roster.parse import CSV_SUFFIXES, XLSX_SUFFIXES, YAML_SUFFIXES, RowError
from storage.admins import EnterpriseLine, PersonCell

__all__ = ["XLSX_SUFFIXES"]
ROSTER_SUFFIXES = (*XLSX_SUFFIXES, *CSV_SUFFIXES, *YAML_SUFFIXES)
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
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
