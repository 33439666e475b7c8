"""The command line: ``gridbot roster import`` provisions when the rooms' plan changed, and
``gridbot provision`` prints progress (plain lines when not a terminal) and a summary."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import yaml

from bot.sandbox.homeserver import Synapse
from tests.bot_harness import BotFactory

REPO = Path(__file__).resolve().parents[1]


async def gridbot_cli(*args: str, cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode()


async def test_import_provisions_then_provision_is_a_no_op(
    gridbot: BotFactory, synapse: Synapse, tmp_path: Path
) -> None:
    bot = await gridbot()
    config = tmp_path / "bot.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "homeserver": bot.config.homeserver,
                "user_id": bot.config.user_id,
                "password": bot.config.password,
                "database_url": bot.config.database_url,
            }
        ),
        encoding="utf-8",
    )
    tag = uuid.uuid4().hex[:6]
    chief = await synapse.register(f"cli-chief-{tag}", "pw")
    roster = tmp_path / "roster.yaml"
    rows = [
        {
            "county": "芦溪县",
            "l1_chief": f"王建国/13800000001/{chief}",
            "domain": "道路货运",
            "l2_chief": f"李卫东/13800000002/@cli-nobody-{tag}:localhost",
            "l2_members": ["张敏/13800000003"],
            "enterprise": "赣西物流有限公司",
            "type": "货运",
            "ent_chief": "刘强/13800000004",
        }
    ]
    roster.write_text(yaml.safe_dump({"rows": rows}, allow_unicode=True), encoding="utf-8")

    rc, out = await gridbot_cli("roster", "import", str(roster), "-c", str(config), cwd=tmp_path)
    assert rc == 0, out
    assert "已导入 / imported" in out and "名册有变化，正在调整房间" in out
    # county space, admin room, level-1 room, grid space, level-2 room, enterprise room
    assert "创建房间 / creating rooms: 6/6" in out
    assert "新建 / created 6" in out and "失败 / failed: 0" in out
    assert f"李卫东（@cli-nobody-{tag}:localhost）" in out  # no account yet
    assert "张敏（13800000003）" in out  # no Matrix id in the roster

    rc, out = await gridbot_cli("roster", "import", str(roster), "-c", str(config), cwd=tmp_path)
    assert rc == 0 and "房间无需调整" in out, out

    rc, out = await gridbot_cli("provision", "-c", str(config), cwd=tmp_path)
    assert rc == 0, out
    assert "无变化 / unchanged 6" in out and "state-changing requests: 0" in out

    rc, out = await gridbot_cli("provision", "-c", str(config), "--plan", cwd=tmp_path)
    assert rc == 0 and "  芦溪县·二级网格·道路货运" in out and "共 6 个房间" in out, out
