"""Read a roster file (YAML, CSV or XLSX) into validated rows, collecting every problem.

Nothing here touches the database, so a county office's file can be checked on its own.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import logging
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import yaml

from bot.config import MXID_RE, Limits
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
from bot.words import clean, looks_like_phone, phone_digits, phone_number, typed_text
from storage.models import EnterpriseType, UnitKind

log = logging.getLogger(__name__)

YAML_SUFFIXES = (".yaml", ".yml")
# Comma- or tab-separated text; .txt is what Excel's "Unicode text" (UTF-16, tabs) saves.
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
XLSX_SUFFIXES = (".xlsx", ".xlsm")

PEOPLE_SEP = re.compile(r"[;；\r\n]+")
PART_SEP = re.compile(r"[/／]")
# How many leading records may precede the header (a title row, notes).
HEADER_SEARCH_ROWS = 10
# Reports one problem for the row being parsed.
Fail = Callable[[str], None]
MAX_LEN = {"county": 100, "province": 100, "city": 100, "domain": 100, "enterprise": 200}
# A coordinate cell: decimal degrees (full-width digits and a trailing ° are fine).
DEGREES = re.compile(r"^[-+]?\d{1,3}(?:\.\d+)?$")
# One cell, as written: a longer one is refused before it is looked at (a people cell of
# thirty people is some 1,200 characters). A YAML people list holds at most MAX_PEOPLE.
CELL_MAX_CHARS = 4000
MAX_PEOPLE = 200
# Columns of a sheet that are read; a roster has some twenty.
MAX_COLUMNS = 64
# Blank rows after the row limit that are read before the sheet is refused as too long.
SPILL_ROWS = 1000
# What Excel shows (and saves to CSV) when a formula fails: never a name or a phone.
EXCEL_ERRORS = frozenset(
    {"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA"}
    | {"#SPILL!", "#CALC!", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!"}
)
# Company forms that do not tell two enterprises apart (near-duplicate rule, near_key()).
COMPANY_FORMS = ("股份有限公司", "有限责任公司", "有限公司")


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
    # Where the enterprise is (decimal degrees), when the row gives it: both or neither.
    longitude: float | None = None
    latitude: float | None = None

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
    # Column key -> the cell as Excel names it ("L5"); empty for YAML.
    refs: dict[str, str] = field(default_factory=dict)


class _Formula(str):
    """An XLSX cell holding a formula (its text, "=A1+1"): refused, whatever it computed."""


def parse_roster(
    path: Path, limits: Limits | None = None
) -> tuple[list[RosterRow], list[RowError]]:
    """Read and validate a roster file; rows are only meaningful when errors is empty."""
    parsed = read_roster(path, limits)
    return parsed.rows, parsed.errors


def read_roster(path: Path, limits: Limits | None = None) -> ParsedRoster:
    """Read and validate a roster file within ``limits`` (config ``limits:``, defaults when
    None). Never raises for what a file holds: every problem is a RowError."""
    path = Path(path)
    out = ParsedRoster()
    raws = _read_raw(path, out, limits or Limits())
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
    _near_duplicates(rows, out.warnings)
    out.errors.sort(key=lambda e: e.row)
    out.rows = rows
    return out


# --- reading files -----------------------------------------------------------------------


def _read_raw(path: Path, out: ParsedRoster, limits: Limits) -> list[_RawRow]:
    suffix = path.suffix.lower()
    if suffix not in (*YAML_SUFFIXES, *CSV_SUFFIXES, *XLSX_SUFFIXES):
        out.errors.append(
            RowError(
                0,
                f"不支持的文件类型「{path.suffix or path.name}」，请用 .xlsx、.csv（.tsv、.txt）"
                "或 .yaml / unknown file type; use .xlsx, .csv (.tsv, .txt) or .yaml",
            )
        )
        return []
    if not path.is_file():
        out.errors.append(RowError(0, f"找不到文件 {path} / file not found"))
        return []
    try:
        size = path.stat().st_size
        if size > limits.roster_file_bytes:
            raise _Unreadable(
                f"文件有 {_mb(size)}，超过上限 {_mb(limits.roster_file_bytes)}（配置"
                f" limits.roster_file_bytes） / the file is {_mb(size)}, more than"
                " limits.roster_file_bytes"
            )
        if suffix in YAML_SUFFIXES:
            return _read_yaml(path, out, limits)
        if suffix in CSV_SUFFIXES:
            return _rows_from_table(_limited(_csv_records(path), limits.roster_rows), out)
        return _read_xlsx(path, out, limits)
    except _Unreadable as exc:
        out.errors.append(RowError(0, str(exc)))
    except OSError as exc:
        out.errors.append(
            RowError(0, f"无法读取文件 / cannot read the file: {exc.strerror or exc}")
        )
    except Exception as exc:
        # A damaged file ends in one line, never a traceback, whatever the library raised.
        log.debug("unreadable roster %s", path, exc_info=True)
        out.errors.append(RowError(0, f"无法读取文件 / cannot read the file ({_brief(exc)})"))
    return []


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


def _brief(exc: BaseException) -> str:
    """An exception as a short single line, for a message about a damaged file."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 160 else text[:159] + "…"


def _too_many_rows(limit: int) -> _Unreadable:
    return _Unreadable(
        f"名册超过 {limit} 行（配置 limits.roster_rows），请分成几个文件导入"
        f" / the roster has more than {limit} rows (limits.roster_rows); split it"
    )


def _limited(
    records: Iterable[tuple[int, list[Any]]], limit: int
) -> Iterator[tuple[int, list[Any]]]:
    """Records up to row ``limit``; a filled row below it (or many blank ones) is refused."""
    for n, cells in records:
        if n > limit:
            if n > limit + SPILL_ROWS or any(_text(c) for c in cells):
                raise _too_many_rows(limit)
            continue
        yield n, cells


class _Unreadable(Exception):
    """The file exists but is not what its extension says."""


def _unknown_encoding() -> _Unreadable:
    return _Unreadable(
        "无法识别文件编码，请保存为 UTF-8 或 UTF-16（Excel 的「Unicode 文本」）"
        " / unknown text encoding; save as UTF-8 or UTF-16 (Excel's Unicode text)"
    )


def _decode(data: bytes) -> str:
    # Excel's "Unicode text" is UTF-16LE with a BOM; a BOM decides the encoding.
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise _unknown_encoding() from None
        # Binary that happens to start like a BOM decodes to unassigned code points.
        if any(c == "\0" or unicodedata.category(c) == "Cn" for c in text):
            raise _unknown_encoding()
        return text
    # Excel on a Chinese Windows saves CSV as GBK; a UTF-8 BOM is what our template uses.
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise _unknown_encoding()


def _csv_records(path: Path) -> Iterator[tuple[int, list[Any]]]:
    text = _decode(path.read_bytes())
    # Tabs (.tsv, Excel's "Unicode text") or commas: whichever the first lines hold more of.
    head = "\n".join(text[:8192].splitlines()[:HEADER_SEARCH_ROWS])
    tabs = path.suffix.lower() == ".tsv" or head.count("\t") > head.count(",")
    try:
        # Records, not lines: a quoted cell may span lines, yet Excel shows it as one row.
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if tabs else ",")
        yield from enumerate(reader, start=1)
    except csv.Error as exc:
        raise _Unreadable(f"CSV 格式错误 / malformed CSV: {exc}") from None


def _not_xlsx(exc: BaseException) -> _Unreadable:
    return _Unreadable(f"不是有效的 Excel 文件 / not a readable .xlsx file ({_brief(exc)})")


def _read_xlsx(path: Path, out: ParsedRoster, limits: Limits) -> list[_RawRow]:
    # The zip's member sizes are checked before anything is unpacked: a small file can hold
    # a sheet of hundreds of megabytes (zipfile reads no more than the size it declares).
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
        raise _not_xlsx(exc) from None
    if unpacked > limits.roster_unpacked_bytes:
        raise _Unreadable(
            f"Excel 文件解压后有 {_mb(unpacked)}，超过上限 {_mb(limits.roster_unpacked_bytes)}"
            f"（配置 limits.roster_unpacked_bytes） / the .xlsx unpacks to {_mb(unpacked)}, more"
            " than limits.roster_unpacked_bytes"
        )
    import openpyxl

    try:
        # Read-only: rows stream from the sheet's XML and reading stops at the row limit (a
        # full load would build every cell of every merged range first). Not data_only: a
        # formula must be told from a value.
        wb = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except Exception as exc:  # openpyxl raises many kinds on a damaged file
        raise _not_xlsx(exc) from None
    try:
        sheets = [wb.active, *(ws for ws in wb.worksheets if ws is not wb.active)]
        for ws in sheets:
            if ws is None or not hasattr(ws, "iter_rows"):  # none, or a chart sheet
                continue
            merges = _merged_ranges(path, ws, limits.roster_rows)
            records = _limited(_sheet_records(ws, merges), limits.roster_rows)
            probe = ParsedRoster()
            raws = _rows_from_table(records, probe)
            if not _no_header(probe):
                out.errors.extend(probe.errors)
                out.warnings.extend(probe.warnings)
                return raws
    except _Unreadable:
        raise
    except Exception as exc:  # a damaged sheet: malformed XML, impossible values …
        raise _not_xlsx(exc) from None
    finally:
        wb.close()
    out.errors.append(_NO_HEADER)
    return []


# <mergeCell ref="A2:A9"/>, with or without a namespace prefix.
_MERGE_CELL = re.compile(
    rb"<(?:[\w.-]+:)?mergeCell\s[^>]*?\bref\s*=\s*[\"']"
    rb"([A-Za-z]{1,3}[0-9]{1,7}(?::[A-Za-z]{1,3}[0-9]{1,7})?)[\"']"
)
_Range = tuple[int, int, int, int]  # min_col, min_row, max_col, max_row


def _merged_ranges(path: Path, ws: Any, rows: int) -> list[_Range]:
    """The sheet's merged ranges, cut to the columns and rows that are read.

    A read-only sheet does not carry them, so they are found in its XML (a streamed scan: the
    part's size is bounded by limits.roster_unpacked_bytes). Overlapping ranges, which Excel
    never writes, are refused, so filling them in costs at most one step per cell read."""
    from openpyxl.utils.cell import range_boundaries

    member = str(ws._worksheet_path).lstrip("/")  # where openpyxl read the sheet from
    found: set[bytes] = set()
    with zipfile.ZipFile(path) as archive, archive.open(member) as part:
        tail = b""
        while chunk := part.read(1 << 20):
            buf = tail + chunk
            found.update(_MERGE_CELL.findall(buf))
            tail = buf[-512:]
    ranges: list[_Range] = []
    area = 0
    for ref in sorted(found):
        min_col, min_row, max_col, max_row = range_boundaries(ref.decode("ascii").upper())
        assert min_col and min_row and max_col and max_row  # the pattern has all four
        max_col, max_row = min(max_col, MAX_COLUMNS), min(max_row, rows)
        if min_col > max_col or min_row > max_row:
            continue
        area += (max_col - min_col + 1) * (max_row - min_row + 1)
        if area > rows * MAX_COLUMNS:
            raise _Unreadable("合并单元格互相重叠 / the sheet's merged cells overlap each other")
        ranges.append((min_col, min_row, max_col, max_row))
    return ranges


def _cell_value(cell: Any) -> Any:
    value = cell.value
    if getattr(cell, "data_type", None) == "f" and value is not None:
        return _Formula(value if isinstance(value, str) else "=…")
    return value


def _sheet_records(ws: Any, merges: list[_Range]) -> Iterator[tuple[int, list[Any]]]:
    # A merged range shows its value on every row it covers, so fill it into each cell.
    starting: dict[int, list[_Range]] = {}
    for rng in merges:
        starting.setdefault(rng[1], []).append(rng)
    filling: list[tuple[_Range, Any]] = []
    # Rows are read to the end of the sheet's data, not to the size its header claims.
    ws.reset_dimensions()
    for r, row in enumerate(ws.iter_rows(min_row=1, max_col=MAX_COLUMNS), start=1):
        cells = [_cell_value(c) for c in row]
        filling = [(rng, v) for rng, v in filling if rng[3] >= r]
        for rng in starting.pop(r, ()):
            filling.append((rng, cells[rng[0] - 1] if rng[0] <= len(cells) else None))
        for (min_col, _, max_col, _), value in filling:
            for c in range(min_col - 1, min(max_col, len(cells))):
                cells[c] = value
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
    letters = [_column_letter(i + 1) for i in range(len(keys))]
    raws: list[_RawRow] = []
    for n, cells in it:
        row = {k: cells[i] for i, k in enumerate(keys) if k and i < len(cells)}
        if any(_text(v) for v in row.values()):
            refs = {k: f"{letters[i]}{n}" for i, k in enumerate(keys) if k}
            raws.append(_RawRow(n, row, refs))
    return raws


def _column_letter(n: int) -> str:
    """Excel's name of the n-th column (1 → A, 27 → AA)."""
    letters = ""
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


def _check_header(n: int, cells: list[Any], keys: list[str | None], out: ParsedRoster) -> None:
    seen: set[str] = set()
    for cell, key in zip(cells, keys, strict=True):
        text = _text(cell)
        if key is None:
            if text and normalize_header(text) not in IGNORED_HEADERS:
                text = _clip(text)
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


def _read_yaml(path: Path, out: ParsedRoster, limits: Limits) -> list[_RawRow]:
    text = _decode(path.read_bytes())
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"（第{mark.line + 1}行附近 / near line {mark.line + 1}）" if mark else ""
        raise _Unreadable(f"不是有效的 YAML{where} / not valid YAML") from None
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. a date like 2026-02-30
        raise _Unreadable(f"不是有效的 YAML / not valid YAML ({_brief(exc)})") from None
    rows = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise _Unreadable(
            "YAML 文件须有顶层 rows: 列表 / the YAML file needs a top-level rows: list"
        )
    if len(rows) > limits.roster_rows:
        raise _too_many_rows(limits.roster_rows)
    raws: list[_RawRow] = []
    for i, item in enumerate(rows, start=1):
        if not isinstance(item, dict):
            out.errors.append(RowError(i, "每一行须是键值映射 / each row must be a mapping"))
            continue
        cells: dict[str, Any] = {}
        for k, v in item.items():
            name = _clip(str(k)) if isinstance(k, str | int | float | bool) else "?"
            key = column_key(name)
            if key is not None:
                cells[key] = v
            elif normalize_header(name) not in IGNORED_HEADERS:  # 备注 / remark, as in a table
                out.errors.append(RowError(i, f"未知字段「{name}」 / unknown key {name!r}"))
        raws.append(_RawRow(i, cells))
    return raws


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- one row ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A cell as trimmed text: NFKC (full-width forms made half-width), without zero-width or
    control characters (line breaks stay: they separate people); numbers typed by Excel or
    YAML lose their '.0'."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return typed_text(clean(str(value))).strip()


def normalized_name(text: str) -> str:
    """A name as the roster compares and stores it: NFKC ("ＡＢＣ" is "ABC"), without
    zero-width or control characters, each run of spaces or line breaks one space, trimmed.
    Two names that differ only so are the same name."""
    return " ".join(typed_text(clean(text)).split())


def near_key(name: str) -> str:
    """What two names that are *nearly* the same share (a warning, never merged): the
    normalized name in lower case without spaces, punctuation or symbols, with a trailing
    股份有限公司 / 有限责任公司 / 有限公司 read as 公司."""
    key = "".join(
        c for c in normalized_name(name).casefold() if unicodedata.category(c)[0] not in "PSZ"
    )
    for form in COMPANY_FORMS:
        if key.endswith(form):
            return key[: -len(form)] + "公司"
    return key


def parse_cells(
    cells: Mapping[str, Any], row: int = 2, refs: Mapping[str, str] | None = None
) -> tuple[RosterRow | None, list[RowError]]:
    """One row as a file holds it (column key → cell value, ``refs`` the cells' names such as
    "L5") → the row, or its errors. Never raises for what the cells hold."""
    errors: list[RowError] = []
    parsed = _parse_row(_RawRow(row, dict(cells), dict(refs or {})), errors)
    return parsed, errors


# Scalars a cell may hold as a file gives it (YAML also gives dates and booleans).
_SCALARS = (str, int, float, bool, date, datetime, time)


def _cell_problems(raw: _RawRow) -> list[str]:
    """Per cell: what makes it unusable whatever its column (a formula, an Excel error, an
    invisible character, an oversized or strangely shaped value), named by its cell."""
    problems: list[str] = []
    for key, value in raw.cells.items():
        col = COLUMN_BY_KEY[key]
        found = _value_problem(value, col.people)
        if found is None:
            continue
        zh, en = found
        ref = raw.refs.get(key)
        if ref:
            problems.append(f"单元格 {ref}（{col.header}）{zh} / cell {ref} ({col.english}) {en}")
        else:
            problems.append(f"「{col.header}」{zh} / {col.english} {en}")
    return problems


def _value_problem(value: Any, people: bool, nested: bool = False) -> tuple[str, str] | None:
    if value is None:
        return None
    if isinstance(value, _Formula):
        return (
            f"是公式（{_clip(str(value))}），请复制后「选择性粘贴 → 数值」",
            "is a formula: paste the values instead (Paste Special → Values)",
        )
    if isinstance(value, str):
        if len(value) > CELL_MAX_CHARS:
            return (f"超过 {CELL_MAX_CHARS} 字", f"is longer than {CELL_MAX_CHARS} characters")
        text = _text(value)
        if text.upper() in EXCEL_ERRORS:
            return (
                f"是 Excel 错误值 {text}，请填写实际内容",
                f"holds the Excel error {text}; write the actual value",
            )
        odd = sorted({c for c in text if unicodedata.category(c) in ("Cf", "Cs")})
        if odd:
            points = "、".join(f"U+{ord(c):04X}" for c in odd[:3])
            return (
                f"含有不可见的格式字符 {points}（如方向标记），请删除",
                f"contains invisible formatting characters ({points}, e.g. direction marks)",
            )
        return None
    if isinstance(value, int) and value.bit_length() > 3 * CELL_MAX_CHARS:
        return (f"超过 {CELL_MAX_CHARS} 字", f"is longer than {CELL_MAX_CHARS} characters")
    if isinstance(value, _SCALARS):
        return None
    if people and not nested and isinstance(value, list):
        if len(value) > MAX_PEOPLE:
            return (f"超过 {MAX_PEOPLE} 人", f"lists more than {MAX_PEOPLE} people")
        for item in value:
            if (found := _value_problem(item, people, nested=True)) is not None:
                return found
        return None
    if people and isinstance(value, dict):
        for item in value.values():
            if item is not None and not isinstance(item, _SCALARS):
                return ("中的人员格式不对", "holds a person in an unknown form")
            if (found := _value_problem(item, people, nested=True)) is not None:
                return found
        return None
    if isinstance(value, list | dict) and not nested:
        return None  # a text column given a list or mapping: reported with the column
    return ("的格式不对（应为文字）", "must be text")


def _parse_row(raw: _RawRow, errors: list[RowError]) -> RosterRow | None:
    n, cells = raw.row, raw.cells
    unusable = _cell_problems(raw)
    if unusable:
        errors.extend(RowError(n, problem) for problem in unusable)
        return None
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
        text[col.key] = normalized_name(_text(value))
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
    point = _coordinates(text["longitude"], text["latitude"], fail)
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
    if _blank(cells.get("ent_chief")) or (not found and not people["ent_chief"]):
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
        longitude=point[0] if point else None,
        latitude=point[1] if point else None,
    )


def _blank(value: Any) -> bool:
    if isinstance(value, list):
        return all(_blank(v) for v in value)
    if isinstance(value, dict):
        return all(_blank(v) for v in value.values())
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


def _degrees(text: str) -> float | None:
    """A coordinate cell as a number of degrees, or None when it is not one."""
    text = unicodedata.normalize("NFKC", text).strip().removesuffix("°").strip()
    return float(text) if DEGREES.match(text) else None


def _coordinates(lon_text: str, lat_text: str, fail: Fail) -> tuple[float, float] | None:
    """(longitude, latitude) of the 经度 / 纬度 cells: both blank is None; one alone, a
    non-number or a value off the globe is an error."""
    if not lon_text and not lat_text:
        return None
    if not lon_text or not lat_text:
        fail("经度和纬度须同时填写（或都留空） / give both longitude and latitude (or neither)")
        return None
    lon, lat = _degrees(lon_text), _degrees(lat_text)
    ok = True
    for value, cell, zh, en, example in (
        (lon, lon_text, "经度", "longitude", "114.0298"),
        (lat, lat_text, "纬度", "latitude", "27.6306"),
    ):
        if value is None:
            fail(
                f"「{zh}」「{cell}」不是数字，应为十进制度数，如 {example}"
                f" / {en} {cell!r} is not a number of degrees like {example}"
            )
            ok = False
    if not ok or lon is None or lat is None:
        return None
    if not -90 <= lat <= 90 and -90 <= lon <= 90 and -180 <= lat <= 180:
        fail(
            f"经度 {lon_text}、纬度 {lat_text} 似乎填反了（纬度在 -90 到 90 之间）"
            " / longitude and latitude look swapped (latitude lies between -90 and 90)"
        )
        return None
    if not -180 <= lon <= 180:
        fail(f"经度 {lon_text} 超出范围（-180 到 180） / longitude out of range (-180 to 180)")
        ok = False
    if not -90 <= lat <= 90:
        fail(f"纬度 {lat_text} 超出范围（-90 到 90） / latitude out of range (-90 to 90)")
        ok = False
    return (lon, lat) if ok else None


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
            found = [_person_from_mapping(item, header, fail)]
        else:  # a YAML list entry may hold several people, as a cell does
            parts = [p for p in PEOPLE_SEP.split(_text(item)) if p.strip()]
            found = [_person_from_text(part, header, fail) for part in parts]
        for ref in found:
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


def mapping_as_text(item: dict[Any, Any]) -> str:
    """A YAML person mapping as a table cell writes it: 姓名/电话/@账号 (name first; keys this
    reader does not know keep their place after it)."""
    order = {"name": 0, "phone": 1, "matrix_id": 2}
    ranked = sorted(
        item.items(), key=lambda kv: order.get(_MAPPING_KEYS.get(normalize_header(str(kv[0]))), 3)
    )
    return "/".join(_text(v) for _, v in ranked if not _blank(v))


def _person_from_mapping(item: dict[Any, Any], header: str, fail: Fail) -> PersonRef | None:
    fields: dict[str, str] = {}
    for k, v in item.items():
        key = _MAPPING_KEYS.get(normalize_header(str(k)))
        if key is None:
            k = _clip(normalized_name(str(k)))
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
    name = normalized_name(name)
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
        mxid = normalized_name(mxid)
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


def _near_duplicates(rows: list[RosterRow], warnings: list[str]) -> None:
    """Names that differ though only in spaces, punctuation or the company form (near_key):
    probably one enterprise (grid, county) written two ways. Reported, never merged."""
    first: dict[tuple[Any, ...], tuple[str, int]] = {}
    told: set[tuple[Any, ...]] = set()
    for row in rows:
        for what, scope, name in (
            (("县（单位）", "county"), (), row.county),
            (("业务领域", "domain"), row.unit_key, row.domain),
            (("企业", "enterprise"), row.unit_key, row.enterprise),
        ):
            key = (what, scope, near_key(name))
            seen, at = first.setdefault(key, (name, row.row))
            if seen == name or (*key, name) in told:
                continue
            told.add((*key, name))
            warnings.append(
                f"第{row.row}行: {what[0]}「{name}」与第{at}行的「{seen}」几乎相同（只差空格、"
                f"标点或“有限公司”一类的后缀），请确认不是同一个 / near-duplicate {what[1]} "
                f"names {name!r} and {seen!r} (row {at}): check they are not the same"
            )
