"""The roster (摸清底数，建立网格): import from YAML / CSV / XLSX, diff, coverage check."""

from bot.roster.apply import Change, ChangeKind, Changes, ImportResult, import_roster
from bot.roster.check import CoverageSummary, Gap, GapKind, check_coverage, coverage_summary
from bot.roster.commands import cmd_check, cmd_import
from bot.roster.parse import PersonRef, RosterRow, RowError, parse_roster, read_roster

__all__ = [
    "Change",
    "ChangeKind",
    "Changes",
    "CoverageSummary",
    "Gap",
    "GapKind",
    "ImportResult",
    "PersonRef",
    "RosterRow",
    "RowError",
    "check_coverage",
    "cmd_check",
    "cmd_import",
    "coverage_summary",
    "import_roster",
    "parse_roster",
    "read_roster",
]
