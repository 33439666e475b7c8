"""What a plain ``pip install gridbot`` gets: the demo roster ships inside the package, so
``gridbot sandbox`` works from any directory; and the runtime does not need the sandbox."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What pyproject.toml builds from. Built from a copy, so no build/ or stale egg-info is left
# in (or taken from) the checkout.
SOURCES = ("pyproject.toml", "README.md", "bot", "handlers", "storage", "messages")
ROSTER_IN_WHEEL = "bot/sandbox/data/demo-county.yaml"

# Runs with the unpacked wheel first on sys.path and the venv's site-packages (for the
# dependencies) after it, without `site` (-S): the editable install's import hook, which would
# find the checkout, is never loaded.
LOAD_DEMO = """
import asyncio, json, sys
site, deps, db = sys.argv[1:]
sys.path[:0] = [site]
sys.path.append(deps)
import bot.sandbox.demo as demo
assert demo.__file__.startswith(site), demo.__file__
logins, line = asyncio.run(demo.load_roster("sqlite+aiosqlite:///" + db))
print(json.dumps({"logins": [[p.name, p.user_id] for p in logins], "line": line}))
"""

RUNTIME = ("bot.app", "bot.dispatcher", "bot.sender", "bot.syncer", "bot.scheduler")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
    done = subprocess.run(build, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return next(out.glob("gridbot-*.whl"))


def test_the_wheel_carries_the_demo_roster(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert zf.read(ROSTER_IN_WHEEL) == (ROOT / ROSTER_IN_WHEEL).read_bytes()
    assert "bot/sandbox/homeserver.py" in names
    assert not any(n.startswith("examples/") for n in names)


def test_the_installed_wheel_loads_the_demo_county(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    work = tmp_path / "elsewhere"  # not the checkout, no examples/ around
    work.mkdir()
    deps = sysconfig.get_paths()["purelib"]
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", LOAD_DEMO, str(site), deps, str(work / "g.db")],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert ["刘建国", "@liujianguo:localhost"] in got["logins"]
    assert len(got["logins"]) > 20 and "(15 rows)" in got["line"]


def test_the_runtime_does_not_import_the_sandbox() -> None:
    check = (
        "import importlib, sys\n"
        f"for name in {RUNTIME!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('bot.sandbox')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
