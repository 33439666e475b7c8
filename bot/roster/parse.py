"""Read a roster file (YAML, CSV or XLSX) into validated rows, collecting every problem.

Nothing here touches the database, so a county office's file can be checked on its own.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.config import MXID_RE
from bot.roster.layout import (
    COLUMN_BY_KEY,
    COLUMNS,
    IGNORED_HEADERS,
    SPECIAL_BODIES,
    TYPE_CHOICES,
    UNIT_KIND_CHOICES,
    Scope,
    column_key,
    enterprise_type,
    normalize_header,
    unit_kind,
)
from bot.words import looks_like_phone, phone_digits, phone_number
from storage.models import EnterpriseType, UnitKind

YAML_SUFFIXES = (".yaml", ".yml")
CSV_SUFFIXES = (".csv",)
XLSX_SUFFIXES = (".xlsx", ".xlsm")

PEOPLE_SEP = re.compile(r"[;；\r\n]+")
PART_SEP = re.compile(r"[/／]")
# How many leading records may precede the header (a title row, notes).
HEADER_SEARCH_ROWS = 10
# Reports one problem for the row being parsed.
Fail = Callable[[str], None]
MAX_LEN = {"county": 100, "province": 100, "city": 100, "domain": 100, "enterprise": 200}


@dataclass(frozen=True)
class RowError:
    """One problem, at the row a user sees (header = row 1); row 0 means the whole file."""

    row: int
    message: str

    def __str__(self) -> str:
        return f"第{self.row}行: {self.message}" if self.row else f"文件: {self.message}"


@dataclass(frozen=True)
class PersonRef:
    """A person as written in the roster; identified by Matrix id, else by phone."""

    name: str
    phone: str | None = None
    matrix_id: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return ("mx", self.matrix_id) if self.matrix_id else ("ph", self.phone or "")

    def __str__(self) -> str:
        return "/".join(p for p in (self.name, self.phone, self.matrix_id) if p)


@dataclass(frozen=True)
class RosterRow:
    """One enterprise row; county- and domain-level blanks are filled from earlier rows."""

    row: int
    county: str
    unit_kind: UnitKind
    domain: str
    enterprise: str
    type: EnterpriseType
    ent_chief: PersonRef
    province: str | None = None
    city: str | None = None
    l1_chief: PersonRef | None = None
    l1_office_director: PersonRef | None = None
    l1_office_members: tuple[PersonRef, ...] = ()
    l2_chief: PersonRef | None = None
    l2_office_members: tuple[PersonRef, ...] = ()
    l2_members: tuple[PersonRef, ...] = ()
    ent_members: tuple[PersonRef, ...] = ()
    # The county- / domain-level keys this row actually filled in (blank = same as above).
    given: frozenset[str] = frozenset()

    @property
    def unit_key(self) -> tuple[str, str]:
        return (self.unit_kind.value, self.county)

    @property
    def grid_key(self) -> tuple[str, str, str]:
        return (self.unit_kind.value, self.county, self.domain)

    def people(self) -> Iterator[tuple[str, PersonRef]]:
        """Every (column key, person) of the row, in column order."""
        for col in COLUMNS:
            if not col.people:
                continue
            value = getattr(self, col.key)
            refs = value if isinstance(value, tuple) else (value,) if value else ()
            for ref in refs:
                yield col.key, ref


@dataclass
class ParsedRoster:
    rows: list[RosterRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    # Harmless oddities (ignored columns), shown but not blocking.
    warnings: list[str] = field(default_factory=list)


@dataclass
class _RawRow:
    row: int
    cells: dict[str, Any]


def parse_roster(path: Path) -> tuple[list[RosterRow], list[RowError]]:
    """Read and validate a roster file; rows are only meaningful when errors is empty."""
    parsed = read_roster(path)
    return parsed.rows, parsed.errors


def read_roster(path: Path) -> ParsedRoster:
    path = Path(path)
    out = ParsedRoster()
    raws = _read_raw(path, out)
    if out.errors:
        return out
    if not raws:
        out.errors.append(RowError(0, "文件中没有数据行 / the file has no data rows"))
        return out
    rows = []
    for raw in raws:
        row = _parse_row(raw, out.errors)
        if row is not None:
            rows.append(row)
    rows = _unify_people(rows, out.errors)
    rows = _resolve_shared_cells(rows, out.errors)
    _check_duplicates(rows, out.errors)
    out.errors.sort(key=lambda e: e.row)
    out.rows = rows
    return out


# --- reading files -----------------------------------------------------------------------


def _read_raw(path: Path, out: ParsedRoster) -> list[_RawRow]:
    suffix = path.suffix.lower()
    if suffix not in (*YAML_SUFFIXES, *CSV_SUFFIXES, *XLSX_SUFFIXES):
        out.errors.append(
            RowError(
                0,
                f"不支持的文件类型「{path.suffix or path.name}」，请用 .xlsx、.csv 或 .yaml"
                " / unknown file type; use .xlsx, .csv or .yaml",
            )
        )
        return []
    if not path.is_file():
        out.errors.append(RowError(0, f"找不到文件 {path} / file not found"))
        return []
    try:
        if suffix in YAML_SUFFIXES:
            return _read_yaml(path, out)
        if suffix in CSV_SUFFIXES:
            return _rows_from_table(_csv_records(path), out)
        return _read_xlsx(path, out)
    except _Unreadable as exc:
        out.errors.append(RowError(0, str(exc)))
    except OSError as exc:
        out.errors.append(
            RowError(0, f"无法读取文件 / cannot read the file: {exc.strerror or exc}")
        )
    return []


class _Unreadable(Exception):
    """The file exists but is not what its extension says."""


def _decode(data: bytes) -> str:
    # Excel on a Chinese Windows saves CSV as GBK; a UTF-8 BOM is what our template uses.
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise _Unreadable("无法识别文件编码，请保存为 UTF-8 / unknown text encoding; save as UTF-8")


def _csv_records(path: Path) -> Iterator[tuple[int, list[Any]]]:
    text = _decode(path.read_bytes())
    try:
        # Records, not lines: a quoted cell may span lines, yet Excel shows it as one row.
        yield from enumerate(csv.reader(io.StringIO(text, newline="")), start=1)
    except csv.Error as exc:
        raise _Unreadable(f"CSV 格式错误 / malformed CSV: {exc}") from None


def _read_xlsx(path: Path, out: ParsedRoster) -> list[_RawRow]:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        # Not read-only: merged cells (common for county-level columns) need the full sheet.
        wb = openpyxl.load_workbook(path, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError) as exc:
        raise _Unreadable(f"不是有效的 Excel 文件 / not a readable .xlsx file ({exc})") from None
    sheets = [wb.active, *(ws for ws in wb.worksheets if ws is not wb.active)]
    for ws in sheets:
        if ws is None:
            continue
        probe = ParsedRoster()
        raws = _rows_from_table(_sheet_records(ws), probe)
        if not _no_header(probe):
            out.errors.extend(probe.errors)
            out.warnings.extend(probe.warnings)
            return raws
    out.errors.append(_NO_HEADER)
    return []


def _sheet_records(ws: Any) -> Iterator[tuple[int, list[Any]]]:
    # A merged range shows its value on every row it covers, so fill it into each cell.
    fill: dict[tuple[int, int], Any] = {}
    for rng in ws.merged_cells.ranges:
        value = ws.cell(rng.min_row, rng.min_col).value
        for r in range(rng.min_row, rng.max_row + 1):
            for c in range(rng.min_col, rng.max_col + 1):
                fill[(r, c)] = value
    for r, values in enumerate(ws.iter_rows(min_row=1, min_col=1, values_only=True), start=1):
        cells = list(values)
        for c in range(len(cells)):
            if (r, c + 1) in fill:
                cells[c] = fill[(r, c + 1)]
        yield r, cells


_NO_HEADER = RowError(
    0,
    "找不到表头（应含「县」「业务领域」「企业名称」等列）"
    " / no header row found (expected columns such as 县, 业务领域, 企业名称)",
)


def _no_header(out: ParsedRoster) -> bool:
    return _NO_HEADER in out.errors


def _rows_from_table(records: Iterable[tuple[int, list[Any]]], out: ParsedRoster) -> list[_RawRow]:
    """Find the header among the first records, then map each data record by column key."""
    it = iter(records)
    header: tuple[int, list[str | None]] | None = None
    for n, cells in it:
        keys = [column_key(_text(c)) if _text(c) else None for c in cells]
        if sum(1 for k in keys if k) >= 2:
            header = (n, keys)
            _check_header(n, cells, keys, out)
            break
        if n >= HEADER_SEARCH_ROWS:
            break
    if header is None:
        out.errors.append(_NO_HEADER)
        return []
    if out.errors:
        return []
    _, keys = header
    raws: list[_RawRow] = []
    for n, cells in it:
        row = {k: cells[i] for i, k in enumerate(keys) if k and i < len(cells)}
        if any(_text(v) for v in row.values()):
            raws.append(_RawRow(n, row))
    return raws


def _check_header(n: int, cells: list[Any], keys: list[str | None], out: ParsedRoster) -> None:
    seen: set[str] = set()
    for cell, key in zip(cells, keys, strict=True):
        text = _text(cell)
        if key is None:
            if text and normalize_header(text) not in IGNORED_HEADERS:
                out.warnings.append(f"忽略未知的列「{text}」 / ignored unknown column {text!r}")
            continue
        if key in seen:
            out.errors.append(RowError(n, f"列「{text}」重复 / duplicate column {text!r}"))
        seen.add(key)
    missing = [c.header for c in COLUMNS if c.required and c.key not in seen]
    if missing:
        out.errors.append(
            RowError(n, f"缺少必需的列：{'、'.join(missing)} / missing required columns")
        )


def _read_yaml(path: Path, out: ParsedRoster) -> list[_RawRow]:
    text = _decode(path.read_bytes())
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"（第{mark.line + 1}行附近 / near line {mark.line + 1}）" if mark else ""
        raise _Unreadable(f"不是有效的 YAML{where} / not valid YAML") from None
    rows = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise _Unreadable(
            "YAML 文件须有顶层 rows: 列表 / the YAML file needs a top-level rows: list"
        )
    raws: list[_RawRow] = []
    for i, item in enumerate(rows, start=1):
        if not isinstance(item, dict):
            out.errors.append(RowError(i, "每一行须是键值映射 / each row must be a mapping"))
            continue
        cells: dict[str, Any] = {}
        for k, v in item.items():
            key = column_key(str(k))
            if key is None:
                out.errors.append(RowError(i, f"未知字段「{k}」 / unknown key {k!r}"))
            else:
                cells[key] = v
        raws.append(_RawRow(i, cells))
    return raws


# --- one row ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A cell as trimmed text; numbers typed by Excel or YAML lose their '.0'."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _parse_row(raw: _RawRow, errors: list[RowError]) -> RosterRow | None:
    n, cells = raw.row, raw.cells
    found: list[RowError] = []

    def fail(msg: str) -> None:
        found.append(RowError(n, msg))

    text: dict[str, str] = {}
    for col in COLUMNS:
        if col.people:
            continue
        value = cells.get(col.key)
        if isinstance(value, dict | list):
            fail(f"「{col.header}」应为文字 / {col.english} must be text")
            value = None
        text[col.key] = _text(value)
        limit = MAX_LEN.get(col.key)
        if limit and len(text[col.key]) > limit:
            fail(f"「{col.header}」超过{limit}字 / {col.english} is longer than {limit} characters")

    for key, zh, en in (
        ("county", "县（单位）名称", "county"),
        ("domain", "业务领域", "domain"),
        ("enterprise", "企业名称", "enterprise name"),
    ):
        if not text[key]:
            fail(f"缺少{zh} / missing {en}")
    etype = enterprise_type(text["type"]) if text["type"] else None
    if not text["type"]:
        fail("缺少企业类型 / missing enterprise type")
    elif etype is None:
        fail(f"企业类型「{text['type']}」无法识别，可填：{TYPE_CHOICES} / unknown enterprise type")
    kind = _unit_kind(text["unit_kind"], text["county"], fail)
    if kind is UnitKind.SPECIAL and text["city"]:
        fail(
            "省直单位不属于设区市，「市」请留空 / a province-level body has no city; leave 市 blank"
        )

    people: dict[str, tuple[PersonRef, ...]] = {}
    for col in COLUMNS:
        if col.people:
            refs = _parse_people(cells.get(col.key), col.header, fail)
            if col.single and len(refs) > 1:
                fail(f"「{col.header}」只能填一人 / only one {col.english} allowed")
            people[col.key] = refs
    if _blank(cells.get("ent_chief")):
        fail("缺少企业负责人 / missing enterprise chief")

    if found:
        errors.extend(found)
        return None
    assert etype is not None and kind is not None
    given = frozenset(
        c.key
        for c in COLUMNS
        if c.scope is not Scope.ROW and c.key != "unit_kind" and not _blank(cells.get(c.key))
    )
    return RosterRow(
        row=n,
        county=text["county"],
        unit_kind=kind,
        domain=text["domain"],
        enterprise=text["enterprise"],
        type=etype,
        province=text["province"] or None,
        city=text["city"] or None,
        l1_chief=_first(people["l1_chief"]),
        l1_office_director=_first(people["l1_office_director"]),
        l1_office_members=people["l1_office_members"],
        l2_chief=_first(people["l2_chief"]),
        l2_office_members=people["l2_office_members"],
        l2_members=people["l2_members"],
        ent_chief=people["ent_chief"][0],
        ent_members=people["ent_members"],
        given=given,
    )


def _blank(value: Any) -> bool:
    if isinstance(value, list | dict):
        return not value
    return not _text(value)


def _first(refs: tuple[PersonRef, ...]) -> PersonRef | None:
    return refs[0] if refs else None


def _unit_kind(text: str, county: str, fail: Fail) -> UnitKind | None:
    if not text:
        # The three province-level bodies are recognised by name, so 单位类型 may stay blank.
        return UnitKind.SPECIAL if county in SPECIAL_BODIES else UnitKind.COUNTY
    kind = unit_kind(text)
    if kind is None:
        fail(f"单位类型「{text}」无法识别，可填：{UNIT_KIND_CHOICES} / unknown unit kind")
    return kind


# --- person cells ------------------------------------------------------------------------


def _parse_people(value: Any, header: str, fail: Fail) -> tuple[PersonRef, ...]:
    """A person cell: '姓名/电话/@id:server' entries split by ；, ; or newlines (or YAML forms)."""
    items: list[Any]
    if value is None:
        return ()
    if isinstance(value, list):
        items = value
    elif isinstance(value, dict):
        items = [value]
    else:
        items = [p for p in PEOPLE_SEP.split(_text(value)) if p.strip()]
    refs: list[PersonRef] = []
    for item in items:
        if isinstance(item, dict):
            ref = _person_from_mapping(item, header, fail)
        else:
            ref = _person_from_text(_text(item), header, fail)
        if ref is not None and ref not in refs:
            refs.append(ref)
    return tuple(refs)


def _person_from_text(text: str, header: str, fail: Fail) -> PersonRef | None:
    if not text:
        return None
    parts = [p.strip() for p in PART_SEP.split(text)]
    name, rest = parts[0], [p for p in parts[1:] if p]
    if not name or looks_like_phone(name) or name.startswith(("@", "＠")):
        fail(
            f"「{header}」中的「{text}」缺少姓名，应写成 姓名/电话/@账号:服务器"
            " / missing name; write name/phone/@user:server"
        )
        return None
    phone: str | None = None
    mxid: str | None = None
    for part in rest:
        if part.startswith(("@", "＠")) and mxid is None:
            mxid = part
        elif looks_like_phone(part) and phone is None:
            phone = part
        else:
            fail(
                f"「{header}」中的「{text}」：无法识别「{part}」（应为电话或 Matrix 账号）"
                f" / cannot tell what {part!r} is (expected a phone or a Matrix id)"
            )
            return None
    return _person(name, phone, mxid, header, fail)


_MAPPING_KEYS = {
    "name": "name",
    "姓名": "name",
    "phone": "phone",
    "电话": "phone",
    "手机": "phone",
    "matrix_id": "matrix_id",
    "matrix": "matrix_id",
    "mxid": "matrix_id",
    "matrix账号": "matrix_id",
}


def _person_from_mapping(item: dict[Any, Any], header: str, fail: Fail) -> PersonRef | None:
    fields: dict[str, str] = {}
    for k, v in item.items():
        key = _MAPPING_KEYS.get(normalize_header(str(k)))
        if key is None:
            fail(f"「{header}」中的未知字段「{k}」 / unknown person key {k!r}")
            return None
        fields[key] = _text(v)
    if not fields.get("name"):
        fail(f"「{header}」中有人员缺少姓名 / a person has no name")
        return None
    return _person(fields["name"], fields.get("phone"), fields.get("matrix_id"), header, fail)


def _person(
    name: str, phone: str | None, mxid: str | None, header: str, fail: Fail
) -> PersonRef | None:
    ok = True
    if len(name) > 100:
        fail(f"「{header}」中的姓名过长 / name too long")
        ok = False
    if phone:
        # One phone rule (bot.words) for roster files and staff changes typed in chat.
        phone = phone_digits(phone)
        if phone_number(phone) is None:
            fail(
                f"「{header}」中{name}的电话「{phone}」格式不对（应为11位手机号或带区号的座机）"
                " / malformed phone (expected an 11-digit mobile or a landline with area code)"
            )
            ok = False
    if mxid:
        mxid = unicodedata.normalize("NFKC", mxid)
        if not MXID_RE.match(mxid):
            hint = "，用户名须小写" if mxid != mxid.lower() and MXID_RE.match(mxid.lower()) else ""
            fail(
                f"「{header}」中{name}的 Matrix 账号「{mxid}」格式不对（应如 @zhangsan:localhost"
                f"{hint}） / malformed Matrix id"
            )
            ok = False
    if not phone and not mxid:
        fail(f"「{header}」中的{name}须填电话或 Matrix 账号 / {name} needs a phone or a Matrix id")
        ok = False
    return PersonRef(name, phone or None, mxid or None) if ok else None


# --- across rows -------------------------------------------------------------------------


def _unify_people(rows: list[RosterRow], errors: list[RowError]) -> list[RosterRow]:
    """One canonical PersonRef per person, so later comparisons and the DB see one identity.

    A mention with only a phone joins the person whose Matrix id was given with that phone.
    """
    by_mxid: dict[str, tuple[PersonRef, int]] = {}
    for row in rows:
        for _, ref in row.people():
            if not ref.matrix_id:
                continue
            seen = by_mxid.get(ref.matrix_id)
            if seen is None:
                by_mxid[ref.matrix_id] = (ref, row.row)
                continue
            canon, first = seen
            if canon.name != ref.name:
                errors.append(
                    RowError(
                        row.row,
                        f"Matrix 账号 {ref.matrix_id} 在第{first}行是「{canon.name}」，此处是"
                        f"「{ref.name}」 / the same Matrix id is used with two different names",
                    )
                )
            elif ref.phone and canon.phone and ref.phone != canon.phone:
                errors.append(
                    RowError(
                        row.row,
                        f"{ref.name}（{ref.matrix_id}）的电话在第{first}行是 {canon.phone}，"
                        f"此处是 {ref.phone} / the same person has two different phones",
                    )
                )
            elif ref.phone and not canon.phone:
                by_mxid[ref.matrix_id] = (dataclasses.replace(canon, phone=ref.phone), first)

    by_phone: dict[str, list[tuple[PersonRef, int]]] = {}
    for canon, first in by_mxid.values():
        if canon.phone:
            by_phone.setdefault(canon.phone, []).append((canon, first))

    def canonical(ref: PersonRef, n: int) -> PersonRef:
        if ref.matrix_id:
            return by_mxid[ref.matrix_id][0]
        candidates = by_phone.get(ref.phone or "", [])
        same_name = [c for c in candidates if c[0].name == ref.name]
        if len(same_name) == 1:
            return same_name[0][0]
        if same_name:
            errors.append(
                RowError(
                    n,
                    f"电话 {ref.phone} 对应多个 Matrix 账号，请写明{ref.name}的账号"
                    " / this phone belongs to several Matrix ids; give the Matrix id",
                )
            )
        elif candidates:
            owner, first = candidates[0]
            errors.append(
                RowError(
                    n,
                    f"电话 {ref.phone} 在第{first}行属于「{owner.name}」，此处是「{ref.name}」"
                    " / the same phone is used with two different names",
                )
            )
        else:
            by_phone[ref.phone or ""] = [(ref, n)]
        return ref

    return [_map_people(row, lambda r, n=row.row: canonical(r, n)) for row in rows]


def _map_people(row: RosterRow, fn: Any) -> RosterRow:
    changes: dict[str, Any] = {}
    for col in COLUMNS:
        if not col.people:
            continue
        value = getattr(row, col.key)
        if isinstance(value, tuple):
            changes[col.key] = tuple(dict.fromkeys(fn(r) for r in value))
        elif value is not None:
            changes[col.key] = fn(value)
    return dataclasses.replace(row, **changes)


_UNIT_FIELDS = tuple(c.key for c in COLUMNS if c.scope is Scope.UNIT and c.key != "unit_kind")
_GRID_FIELDS = tuple(c.key for c in COLUMNS if c.scope is Scope.GRID)


def _comparable(value: Any) -> Any:
    if isinstance(value, tuple):
        return frozenset(r.key for r in value)
    if isinstance(value, PersonRef):
        return value.key
    return value


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return "；".join(str(r) for r in value) or "（空）"
    return str(value) if value else "（空）"


def _resolve_shared_cells(rows: list[RosterRow], errors: list[RowError]) -> list[RosterRow]:
    """County- and domain-level cells: the first filled value counts; later ones must agree."""
    first: dict[tuple[Any, str], tuple[Any, int]] = {}
    for row in rows:
        for fields, scope_key in ((_UNIT_FIELDS, row.unit_key), (_GRID_FIELDS, row.grid_key)):
            for key in fields:
                if key not in row.given:
                    continue
                value = getattr(row, key)
                seen = first.setdefault((scope_key, key), (value, row.row))
                if _comparable(seen[0]) != _comparable(value):
                    col = COLUMN_BY_KEY[key]
                    errors.append(
                        RowError(
                            row.row,
                            f"「{col.header}」与第{seen[1]}行不一致：{_shown(value)} ≠ "
                            f"{_shown(seen[0])} / {col.english} conflicts with row {seen[1]}",
                        )
                    )
    resolved: list[RosterRow] = []
    for row in rows:
        fill: dict[str, Any] = {}
        for fields, scope_key in ((_UNIT_FIELDS, row.unit_key), (_GRID_FIELDS, row.grid_key)):
            for key in fields:
                if (scope_key, key) in first:
                    fill[key] = first[(scope_key, key)][0]
        resolved.append(dataclasses.replace(row, **fill))
    return resolved


def _check_duplicates(rows: list[RosterRow], errors: list[RowError]) -> None:
    seen: dict[tuple[str, str, str], int] = {}
    for row in rows:
        key = (*row.unit_key, row.enterprise)
        if key in seen:
            errors.append(
                RowError(
                    row.row,
                    f"企业「{row.enterprise}」在{row.county}重复（第{seen[key]}行已有）"
                    f" / duplicate enterprise (already on row {seen[key]})",
                )
            )
        else:
            seen[key] = row.row
