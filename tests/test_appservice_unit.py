"""Appservice mode without a homeserver: settings, the registration file, the endpoint's
answers (a database that is away is a 503, so the homeserver sends the transaction again)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from bot.appservice.feed import invite_of
from bot.appservice.receiver import TransactionReceiver
from bot.cli import main
from bot.config import ConfigError, load_config, parse_config
from storage.db import Database
from storage.models import InboxEvent

BASE = {"homeserver": "http://127.0.0.1:8008", "user_id": "@gridbot:gan.example"}


def _config_file(tmp_path: Path, appservice: dict[str, object]) -> Path:
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump({**BASE, "appservice": appservice}), encoding="utf-8")
    return path


def test_appservice_mode_needs_no_password_and_runs_unencrypted() -> None:
    config = parse_config({**BASE, "appservice": {"url": "http://10.0.0.5:9009"}})
    assert config.encryption.enabled is False
    assert config.appservice is not None and config.appservice.listen == ("10.0.0.5", 9009)
    with pytest.raises(ConfigError, match="encryption is not available in appservice mode"):
        parse_config({**BASE, "appservice": {}, "encryption": True})
    with pytest.raises(ConfigError, match="set password or access_token"):
        parse_config(BASE)  # sync mode still needs a login


def test_tokens_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDBOT_AS_TOKEN", "as-env")
    monkeypatch.setenv("GRIDBOT_HS_TOKEN", "hs-env")
    config = parse_config({**BASE, "appservice": {"as_token": "in-file"}})
    assert config.appservice is not None
    assert (config.appservice.as_token, config.appservice.hs_token) == ("as-env", "hs-env")


def test_registration_names_the_bot_alone_and_is_not_rate_limited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config_file(tmp_path, {"url": "http://127.0.0.1:9009"})
    out = tmp_path / "registration.yaml"
    assert main(["appservice", "registration", "-c", str(path), "-o", str(out)]) == 0
    reg = yaml.safe_load(out.read_text("utf-8"))
    assert reg["sender_localpart"] == "gridbot" and reg["url"] == "http://127.0.0.1:9009"
    assert reg["rate_limited"] is False
    assert reg["namespaces"]["users"] == [{"exclusive": True, "regex": r"@gridbot:gan\.example"}]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # it holds both tokens
    printed = capsys.readouterr().out
    # Tokens that were empty are made, and printed to be put into the configuration.
    assert f"as_token: {reg['as_token']}" in printed and f"hs_token: {reg['hs_token']}" in printed
    assert len(reg["as_token"]) >= 32 and reg["as_token"] != reg["hs_token"]

    # Tokens in the configuration are used as they are, and nothing new is printed.
    path = _config_file(tmp_path, {"as_token": "a" * 40, "hs_token": "h" * 40})
    assert main(["appservice", "registration", "-c", str(path), "-o", str(out)]) == 0
    reg = yaml.safe_load(out.read_text("utf-8"))
    assert (reg["as_token"], reg["hs_token"]) == ("a" * 40, "h" * 40)
    assert "new tokens" not in capsys.readouterr().out
    assert load_config(path).appservice is not None


def test_registration_without_an_appservice_section_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump({**BASE, "password": "p"}), encoding="utf-8")
    assert main(["appservice", "registration", "-c", str(path)]) == 2
    assert "has no appservice: section" in capsys.readouterr().err


async def test_a_database_that_is_away_is_a_503_and_nothing_is_acknowledged() -> None:
    db = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    receiver = TransactionReceiver(db, user_id="@gridbot:localhost", hs_token="hs")
    async with TestClient(TestServer(receiver.app())) as http:
        resp = await http.put(
            "/_matrix/app/v1/transactions/1",
            json={"events": []},
            headers={"Authorization": "Bearer hs"},
        )
        assert resp.status == 503
        # The legacy path and the query token of older homeservers are understood too.
        resp = await http.get("/users/@x:localhost?access_token=hs")
        assert resp.status == 404
    await db.close()


def test_only_an_invite_of_the_bot_is_an_invite() -> None:
    def member(state_key: str, membership: str) -> InboxEvent:
        return InboxEvent(
            event_id="$e",
            seq=1,
            room_id="!r:localhost",
            sender="@chief:localhost",
            type="m.room.member",
            origin_server_ts=1,
            source={
                "state_key": state_key,
                "content": {"membership": membership, "is_direct": True},
            },
        )

    invite = invite_of("@gridbot:localhost", member("@gridbot:localhost", "invite"))
    assert invite is not None and invite.is_direct and invite.inviter == "@chief:localhost"
    assert invite_of("@gridbot:localhost", member("@someone:localhost", "invite")) is None
    assert invite_of("@gridbot:localhost", member("@gridbot:localhost", "join")) is None


async def test_the_start_up_ping_is_tried_again_when_the_homeserver_fails_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Synapse's first ping of an endpoint it had found down can fail on its side (502); the
    bot asks again, so the held-back transactions are still sent at once."""
    from aiohttp import web
    from nio import AsyncClient

    from bot.appservice.ping import ping_homeserver

    answers = [
        web.json_response({"errcode": "M_CONNECTION_FAILED", "error": "AlreadyCalled"}, status=502),
        web.json_response({"duration_ms": 3}),
    ]
    seen: list[str] = []

    async def ping(request: web.Request) -> web.Response:
        seen.append(request.headers["Authorization"])
        return answers.pop(0)

    app = web.Application()
    app.router.add_post("/_matrix/client/v1/appservice/gridbot/ping", ping)
    async with TestServer(app) as server:
        client = AsyncClient(str(server.make_url("")).rstrip("/"), "@gridbot:localhost")
        client.access_token = "as-token"
        try:
            with caplog.at_level("INFO"):
                assert await ping_homeserver(client, "gridbot", pause=0.01)
        finally:
            await client.close()
    assert seen == ["Bearer as-token"] * 2
    assert "reaches the appservice endpoint" in caplog.text
