"""The layers stay apart: handlers write no SQL, storage knows nothing of the bot above it.

Imports are read from the source with ast (every import statement, also those under
``if TYPE_CHECKING:`` or inside a function), so a comment or a string never counts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imports(source: str, package: str) -> Iterator[tuple[str, int]]:
    """(imported module, line) of each import in ``source``, a module of ``package``;
    relative imports are made absolute."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            yield module, node.lineno


def offenders(folder: str, forbidden: set[str]) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        package = ".".join(path.relative_to(ROOT).parts[:-1])
        for module, line in imports(path.read_text(encoding="utf-8"), package):
            if module.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


def test_no_handler_imports_sqlalchemy() -> None:
    """Queries and writes live in storage/; a handler calls them."""
    assert offenders("handlers", {"sqlalchemy"}) == []


def test_no_storage_module_imports_the_bot_or_the_handlers() -> None:
    """storage/ is the bottom layer: what it needs from above (a date, a rule) is passed in."""
    assert offenders("storage", {"bot", "handlers"}) == []


def test_the_scan_reads_imports_not_text() -> None:
    source = (
        '"""import sqlalchemy (a docstring does not count)."""\n'
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from sqlalchemy.ext.asyncio import AsyncSession\n"
        "def f():\n"
        "    import bot.dates\n"
        "from . import visits\n"
        "from ..storage import db\n"
    )
    assert sorted(imports(source, "handlers.cases")) == [
        ("bot.dates", 6),
        ("handlers.cases", 7),
        ("handlers.storage", 8),
        ("sqlalchemy.ext.asyncio", 4),
        ("typing", 2),
    ]
