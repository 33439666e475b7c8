"""What ``gridbot roster import`` may change: only the database it is given; the rooms only when
that is the database of the bot config at hand; a dry run nothing at all."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text

from bot.cli import main
from bot.provision.apply import Summary
from bot.provision.cli import same_database
from bot.roster.apply import import_roster
from storage.db import Database
from storage.migrate import head_revision
from storage.models import AdminUnit, Assignment, Enterprise, Grid, Person, Role
from tests.test_roster_import import DEMO, count, demo_rows, snapshot, write_yaml

ROSTER = str(DEMO["yaml"])


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def write_config(folder: Path, database: Path) -> Path:
    """A bot config whose homeserver is nowhere: a run that reached for it would fail."""
    path = folder / "bot.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "homeserver": "http://127.0.0.1:9",
                "user_id": "@gridbot:localhost",
                "password": "never-used",
                "database_url": sqlite_url(database),
            }
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def provisioned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The databases a run provisioned rooms for (instead of reaching the homeserver)."""
    calls: list[str] = []

    async def fake(db: Database, config: Any, **_: Any) -> Summary:
        calls.append(db.url)
        return Summary()

    monkeypatch.setattr("bot.provision.cli.provision_with_config", fake)
    return calls


def gridbot(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(list(argv))
    return rc, out.getvalue()


def enterprises_in(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM enterprises").fetchone()[0])


def test_import_into_another_database_never_provisions_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provisioned: list[str]
) -> None:
    """The defect: run where bot.yaml lives, ``--database OTHER`` imported into OTHER and then
    provisioned OTHER's grid on the live homeserver (a second tree of rooms)."""
    monkeypatch.chdir(tmp_path)
    live = tmp_path / "live.db"
    write_config(tmp_path, live)
    other = tmp_path / "other.db"

    rc, out = gridbot("roster", "import", ROSTER, "--database", sqlite_url(other))
    assert rc == 0, out
    assert provisioned == []
    assert "已导入 / imported" in out and "房间未调整" in out
    assert enterprises_in(other) == 15
    assert not live.exists()  # the config's database is not even opened


def test_import_into_the_config_database_provisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provisioned: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    live = tmp_path / "live.db"
    config = write_config(tmp_path, live)
    rc, out = gridbot("roster", "import", ROSTER, "-c", str(config))
    assert rc == 0 and provisioned == [sqlite_url(live)], out

    # --database naming the same file (relatively) is the config's database too.
    rows = demo_rows()[:-1]
    smaller = write_yaml(tmp_path / "v2.yaml", rows)
    rc, out = gridbot("roster", "import", str(smaller), "--database", "sqlite+aiosqlite:///live.db")
    assert rc == 0 and len(provisioned) == 2, out
    # --no-provision: never.
    rc, out = gridbot("roster", "import", ROSTER, "--no-provision")
    assert rc == 0 and len(provisioned) == 2 and "房间未调整" not in out, out


def test_same_database() -> None:
    assert same_database("sqlite+aiosqlite:///a.db", f"sqlite+aiosqlite:///{Path.cwd()}/a.db")
    assert not same_database("sqlite+aiosqlite:///a.db", "sqlite+aiosqlite:///b.db")
    pg = "postgresql+asyncpg://postgres@127.0.0.1:5432/grid"
    assert same_database(pg, "postgresql+asyncpg://postgres:secret@127.0.0.1:5432/grid")
    assert not same_database(pg, "postgresql+asyncpg://postgres@127.0.0.1:5432/other")
    assert not same_database(pg, "sqlite+aiosqlite:///grid")


def test_a_dry_run_creates_no_database_and_reaches_no_homeserver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provisioned: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    live = tmp_path / "live.db"
    write_config(tmp_path, live)
    rc, out = gridbot("roster", "import", ROSTER, "--dry-run")
    assert rc == 0, out
    assert "数据库还不存在或是空的" in out and "新增 / added（" in out
    assert out.rstrip().endswith("试运行，未写入 / dry run, nothing written")
    assert not live.exists() and list(tmp_path.iterdir()) == [tmp_path / "bot.yaml"]
    assert provisioned == []


async def _state(db: Database) -> dict[str, Any]:
    """Everything an import could change, sequences included (a rolled-back insert on
    PostgreSQL still draws from them)."""
    state: dict[str, Any] = {"roster": await snapshot(db)}
    for model in (AdminUnit, Grid, Enterprise, Person, Role, Assignment):
        state[model.__tablename__] = await count(db, model)
    async with db.transaction() as s:
        if db.dialect == "postgresql":
            rows = await s.execute(text("SELECT sequencename, last_value FROM pg_sequences"))
            state["sequences"] = sorted(tuple(r) for r in rows)
        state["staff_changes"] = (await s.execute(text("SELECT * FROM staff_changes"))).all()
    return state


async def test_a_dry_run_writes_nothing_not_even_a_sequence(db: Database, tmp_path: Path) -> None:
    assert (await import_roster(db, DEMO["yaml"])).applied
    rows = demo_rows()[2:]
    rows.append(
        dict(
            rows[0],
            enterprise="芦溪县安达货运有限公司",
            ent_chief="钱进/13807992051/@qianjin:localhost",
            ent_members=["孙立/13807992052"],
        )
    )
    path = write_yaml(tmp_path / "v2.yaml", rows)
    before = await _state(db)
    rc, out = await asyncio.to_thread(
        gridbot, "roster", "import", str(path), "--dry-run", "--database", db.url
    )
    assert rc == 0 and "芦溪县安达货运有限公司" in out and "停用 / deactivated（" in out, out
    assert await _state(db) == before


def test_a_dry_run_does_not_upgrade_an_old_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('0001')")
        conn.commit()
    rc, out = gridbot("roster", "import", ROSTER, "--dry-run", "--database", sqlite_url(path))
    assert rc == 1 and "gridbot db upgrade" in out and "0001" in out, out
    with contextlib.closing(sqlite3.connect(path)) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert (tables, version) == ({"alembic_version"}, "0001")
    assert head_revision() != "0001"
