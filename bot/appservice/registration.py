"""The registration file an application service gives its homeserver (``app_service_config_files``
in Synapse's homeserver.yaml), written from the bot's ``appservice:`` settings."""

from __future__ import annotations

import re
import secrets
from typing import Any

from bot.config import Config


def new_token() -> str:
    return secrets.token_urlsafe(32)


def registration(config: Config) -> dict[str, Any]:
    """The registration: the bot's own user as an exclusive namespace (nobody else may register
    it), no rooms or aliases claimed, and ``rate_limited: false`` so sending to a province's rooms
    is never held back by ``rc_message``."""
    settings = config.appservice
    if settings is None:
        raise ValueError("the configuration has no appservice: section")
    user_regex = "@" + re.escape(config.sender_localpart) + ":" + re.escape(config.server_name)
    return {
        "id": settings.id,
        "url": settings.url,
        "as_token": settings.as_token,
        "hs_token": settings.hs_token,
        "sender_localpart": config.sender_localpart,
        "namespaces": {
            "users": [{"exclusive": True, "regex": user_regex}],
            "aliases": [],
            "rooms": [],
        },
        "rate_limited": False,
        "receive_ephemeral": False,
    }
