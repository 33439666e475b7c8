"""README.md's permission tables, generated so they cannot drift from the code.

- **Commands**: who may use each command and in which rooms, from the command specs
  (``Command.roles`` / ``rooms``, collected by ``bot.app.build_router``).
- **Reach**: for each kind of action, how far each role reaches, from the grid directory's
  ``storage.directory.RULES``.

Each table sits between two marker comments in README.md. ``python -m bot.permissions``
rewrites them; ``--check`` exits 1 when README.md is out of date (tests/test_directory_unit.py
checks the same).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from bot import readme as readme_tables
from bot.commands import KNOWN, Command, tr
from messages import Messages
from storage.directory import ACTION_DOCS, ROLE_LABELS, RULES, Action, Extent, role_label

COMMANDS, REACH = "commands", "reach"

# Cells of the reach table: how far one role reaches.
EXTENT_CELLS: dict[Extent, str] = {
    Extent.EVERYTHING: "all",
    Extent.L1_GRID: "level-1 grid",
    Extent.L2_GRID: "level-2 grid",
    Extent.OWN: "own",
    Extent.SERVED: "served",
}
EXTENT_LEGEND = (
    "**all**: every enterprise; **level-1 grid**: the enterprises of every level-2 grid under "
    "the role's level-1 grid (its county); **level-2 grid**: those of the role's level-2 grid; "
    "**own**: the enterprise whose chief or member one is; **served**: the enterprises one "
    "serves as a level-2 member; empty: none."
)
# Roles in the order of the grid: admins, level 1, level 2, level 3; rooms likewise.
ROLE_ORDER = list(ROLE_LABELS)
ROOM_ORDER = ["direct", "l1_room", "l2_room", "enterprise_room", "admin_room"]


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _roles(kinds: Iterable[str]) -> list[str]:
    return sorted(kinds, key=lambda k: (ROLE_ORDER.index(k) if k in ROLE_ORDER else 99, k))


def _who(cmd: Command) -> str:
    if cmd.roles is None:
        return "everyone"
    if cmd.roles == KNOWN:
        return "roster + admins"
    return "、".join(role_label(k) for k in _roles(cmd.roles))


def _where(cmd: Command, messages: Messages) -> str:
    if cmd.rooms is None:
        return "anywhere"
    rooms = sorted(cmd.rooms, key=lambda r: (ROOM_ORDER.index(r) if r in ROOM_ORDER else 99, r))
    return "、".join(messages.label("zh_CN", "room", r) for r in rooms)


def commands_table(commands: Iterable[Command], messages: Messages | None = None) -> str:
    messages = messages or Messages()
    lines = ["| command | aliases | who | where | what |", "|---|---|---|---|---|"]
    for cmd in commands:
        aliases = " ".join(f"`/{a}`" for a in cmd.aliases)
        what = f"{tr(cmd.summary, 'zh_CN')} / {tr(cmd.summary, 'en')}"
        lines.append(
            f"| `{_md(cmd.usage('en'))}` | {aliases} | {_who(cmd)} | {_where(cmd, messages)} "
            f"| {_md(what)} |"
        )
    return "\n".join(lines)


def reach_table() -> str:
    kinds = _roles({k for rule in RULES.values() for k in rule})
    head = ["action", "what", *(role_label(k) for k in kinds)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for action in Action:
        rule = RULES[action]
        cells = [EXTENT_CELLS[rule[k]] if k in rule else "" for k in kinds]
        row = [f"`{action.value}`", _md(ACTION_DOCS[action]), *cells]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n\n" + EXTENT_LEGEND


def render(readme: str, commands: Iterable[Command]) -> str:
    """``readme`` with both generated tables replaced by what the code says now."""
    readme = readme_tables.replace_table(readme, "permissions", COMMANDS, commands_table(commands))
    return readme_tables.replace_table(readme, "permissions", REACH, reach_table())


def main(argv: list[str] | None = None) -> int:
    from bot.app import build_router  # the handlers, only when run

    commands = build_router().commands
    return readme_tables.regenerate(
        argv,
        module="permissions",
        doc=__doc__ or "",
        render=lambda readme: render(readme, commands),
    )


if __name__ == "__main__":
    sys.exit(main())
