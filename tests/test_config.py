"""Configuration: the example loads; a bad file stops the bot with one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_loads_with_defaults() -> None:
    cfg = load_config(ROOT / "bot.example.yaml")
    assert cfg.user_id == "@gridbot:localhost"
    assert cfg.language == "zh_CN" and cfg.timezone == "Asia/Shanghai"
    assert cfg.timing.visits.reminder_days == [20, 25]
    assert cfg.database_url.startswith("sqlite+aiosqlite://")
    assert (cfg.limits.roster_file_bytes, cfg.limits.roster_rows) == (20_000_000, 30_000)
    assert cfg.limits.roster_unpacked_bytes == 50_000_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("homeserver: x\nuser_id: '@a:b'\npassword: p\n", "homeserver: must be an http"),
        (
            "homeserver: http://h\nuser_id: gridbot\npassword: p\n",
            "user_id: 'gridbot' is not a Matrix",
        ),
        ("homeserver: http://h\nuser_id: '@a:b'\n", "set password or access_token"),
        ("user_id: '@a:b'\npassword: p\n", "homeserver: is required but missing"),
        (
            "homeserver: http://h\nuser_id: '@a:b'\npassword: p\ntimezone: Mars/Base\n",
            "timezone: unknown time zone 'Mars/Base'",
        ),
        (
            "homeserver: http://h\nuser_id: '@a:b'\npassword: p\n"
            "timing: {visits: {reminder_days: [31]}}\n",
            "timing.visits.reminder_days: day 31 is not between 1 and 28",
        ),
        (
            "homeserver: http://h\nuser_id: '@a:b'\npassword: p\nlanguag: en\n",
            "languag: is not a known",
        ),
        ("homeserver: [unclosed\n", "not valid YAML at line"),
        (
            "homeserver: http://h\nuser_id: '@a:b'\npassword: p\nlimits: {roster_rows: 0}\n",
            "limits.roster_rows: Input should be greater than or equal to 10",
        ),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_secrets_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text("homeserver: http://h\nuser_id: '@a:b'\n", encoding="utf-8")
    monkeypatch.setenv("GRIDBOT_PASSWORD", "from-env")
    assert load_config(path).password == "from-env"


def test_cli_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text("homeserver: http://h\nuser_id: '@a:b'\npassword: p\nlanguage: fr\n")
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"gridbot: config error: {path}: language: Input should be 'zh_CN' or 'en'"
    ]
    missing = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run", "-c", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert missing.returncode == 2 and "file not found" in missing.stderr
    assert "Traceback" not in missing.stderr
