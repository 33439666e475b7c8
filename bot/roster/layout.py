"""The roster table layout: one row per enterprise, as a county office would fill it in.

The same columns serve CSV / XLSX (Chinese headers, English keys also accepted) and YAML
(English keys under ``rows:``, Chinese keys also accepted).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from storage.models import EnterpriseType, UnitKind


class Scope(StrEnum):
    """Which rows a column's value belongs to, and so where repeats must agree."""

    UNIT = "unit"  # one value per county / special body
    GRID = "grid"  # one value per level-2 grid (county + domain)
    ROW = "row"  # one value per enterprise


@dataclass(frozen=True)
class Column:
    key: str
    header: str  # the Chinese header written into templates
    english: str
    aliases: tuple[str, ...] = ()
    scope: Scope = Scope.ROW
    people: bool = False  # holds person cells
    single: bool = False  # at most one person
    required: bool = False  # the column must exist in the file (and the cell be filled)


COLUMNS: tuple[Column, ...] = (
    Column("province", "省", "province", ("省份", "所属省"), Scope.UNIT),
    Column("city", "市", "city", ("设区市", "所属市", "市州"), Scope.UNIT),
    Column(
        "county",
        "县",
        "county",
        ("县区", "县(市、区)", "县(市区)", "县市区", "县/市/区", "单位", "单位名称", "unit"),
        required=True,
    ),
    Column("unit_kind", "单位类型", "unit kind", ("kind",), Scope.UNIT),
    Column("l1_chief", "一级网格长", "level-1 chief", (), Scope.UNIT, people=True, single=True),
    Column(
        "l1_office_director",
        "一级网格办公室主任",
        "level-1 office director",
        ("一级网格办主任",),
        Scope.UNIT,
        people=True,
        single=True,
    ),
    Column(
        "l1_office_members",
        "一级网格办公室成员",
        "level-1 office members",
        ("一级网格办成员", "l1_office_member"),
        Scope.UNIT,
        people=True,
    ),
    Column("domain", "业务领域", "domain", ("二级网格", "领域"), required=True),
    Column("l2_chief", "二级网格长", "level-2 chief", (), Scope.GRID, people=True, single=True),
    Column(
        "l2_office_members",
        "二级网格办公室成员",
        "level-2 office members",
        ("二级网格办成员", "l2_office_member"),
        Scope.GRID,
        people=True,
    ),
    Column("l2_members", "二级网格员", "level-2 members", ("l2_member",), people=True),
    Column(
        "enterprise",
        "企业名称",
        "enterprise name",
        ("企业", "企业(项目)名称", "企业或项目名称", "项目名称", "name"),
        required=True,
    ),
    Column("type", "企业类型", "enterprise type", ("类型", "企业(项目)类型"), required=True),
    Column(
        "ent_chief",
        "企业负责人",
        "enterprise chief",
        ("三级网格长", "企业网格长"),
        people=True,
        single=True,
        required=True,
    ),
    Column(
        "ent_members",
        "企业网格员",
        "enterprise members",
        ("三级网格员", "ent_member"),
        people=True,
    ),
    # Optional: where the enterprise is, in decimal degrees (WGS-84, as a phone's GPS gives
    # them), resolved by hand; a visit's shared location is measured against it. Both or neither.
    Column("longitude", "经度", "longitude", ("东经", "lng", "lon", "long")),
    Column("latitude", "纬度", "latitude", ("北纬", "lat")),
)

COLUMN_BY_KEY: dict[str, Column] = {c.key: c for c in COLUMNS}

# Columns a spreadsheet may carry for its own use; silently ignored.
IGNORED_HEADERS = frozenset({"序号", "no", "备注", "remark", "remarks", "note", "notes"})


def normalize_header(text: str) -> str:
    """Fold width, case, spaces and required-markers so 'ＯＫ （*）' matches 'ok()'."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"[\s*＊:：]", "", text)
    return text.lower()


def _build_alias_map() -> dict[str, str]:
    out: dict[str, str] = {}
    for col in COLUMNS:
        for name in (col.key, col.header, col.english, *col.aliases):
            out[normalize_header(name)] = col.key
    return out


HEADER_ALIASES: dict[str, str] = _build_alias_map()


def column_key(header: str) -> str | None:
    """The column key for a header (Chinese, English or alias), or None if unknown."""
    return HEADER_ALIASES.get(normalize_header(header))


# --- enterprise types and unit kinds -----------------------------------------------------

_TYPE_ALIASES: dict[EnterpriseType, tuple[str, ...]] = {
    EnterpriseType.PASSENGER: (
        "客运",
        "道路客运",
        "道路客运企业",
        "客运站",
        "汽车站",
        "客运企业",
        "道路客运企业及站场",
        "passenger",
    ),
    EnterpriseType.FREIGHT: ("货运", "道路货运", "货运企业", "道路货运企业", "freight"),
    EnterpriseType.PORT: ("港口", "码头", "港口码头", "port"),
    EnterpriseType.SHIPPING: ("航运", "航运企业", "航运公司", "shipping"),
    EnterpriseType.FERRY: ("渡口", "ferry"),
    EnterpriseType.CONSTRUCTION: (
        "工程",
        "交通工程",
        "在建工程",
        "在建交通工程",
        "在建项目",
        "construction",
    ),
}
ENTERPRISE_TYPES: dict[str, EnterpriseType] = {
    normalize_header(alias): t
    for t, aliases in _TYPE_ALIASES.items()
    for alias in (*aliases, t.name, t.value)
}
TYPE_CHOICES = "客运、货运、港口、航运、渡口、工程"

_UNIT_KIND_ALIASES: dict[UnitKind, tuple[str, ...]] = {
    UnitKind.COUNTY: ("县", "县区", "县级", "区", "县(市、区)", "county"),
    UnitKind.SPECIAL: ("省直", "省直单位", "省级", "special"),
}
UNIT_KINDS: dict[str, UnitKind] = {
    normalize_header(alias): k for k, aliases in _UNIT_KIND_ALIASES.items() for alias in aliases
}
UNIT_KIND_CHOICES = "县、省直"

# The province-level bodies that run special grids; their rows default to 省直.
SPECIAL_BODIES = frozenset({"省综交中心", "省交通执法局", "厅治超办"})


def enterprise_type(text: str) -> EnterpriseType | None:
    return ENTERPRISE_TYPES.get(normalize_header(text))


def unit_kind(text: str) -> UnitKind | None:
    return UNIT_KINDS.get(normalize_header(text))


# --- names for people and places, as shown to users ---------------------------------------

# Role names: storage.directory.role_label (the one mapping).
ASSIGNMENT_LABEL = "二级网格员分工"


def level1_grid_name(unit: str) -> str:
    return f"{unit}一级网格"


def level2_grid_name(unit: str, domain: str) -> str:
    return f"{unit}二级网格·{domain}"
