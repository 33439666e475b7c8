"""Ask the homeserver to ping the bot's endpoint (``POST /_matrix/client/v1/appservice/{id}/ping``).

Done once the bot handles events: it proves to the operator, in the log, that the homeserver
reaches the endpoint (a wrong ``url`` in the registration shows here, not as silence), and a
successful ping makes Synapse retry at once the transactions it holds back for an application
service it found down (its backoff grows to minutes; without the ping, events sent while the bot
was stopped would wait for it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from urllib.parse import quote

import aiohttp
from nio import AsyncClient

log = logging.getLogger(__name__)

PING_TIMEOUT = 30.0


async def ping_homeserver(client: AsyncClient, appservice_id: str) -> bool:
    """Whether the homeserver reached the endpoint; logged either way, never raised."""
    path = f"/_matrix/client/v1/appservice/{quote(appservice_id, safe='')}/ping"
    body = json.dumps({"transaction_id": f"gridbot-{uuid.uuid4().hex[:8]}"})
    headers = {
        "Authorization": f"Bearer {client.access_token}",
        "Content-Type": "application/json",
    }
    start = time.monotonic()
    try:
        async with asyncio.timeout(PING_TIMEOUT):
            resp = await client.send("POST", path, data=body, headers=headers)
            try:
                answer = await resp.json(content_type=None)
            finally:
                resp.release()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("could not ask the homeserver to ping the appservice endpoint: %r", exc)
        return False
    if resp.status == 200:
        log.info(
            "the homeserver reaches the appservice endpoint (ping %.0f ms, round trip %.0f ms)",
            float((answer or {}).get("duration_ms", 0)),
            (time.monotonic() - start) * 1000,
        )
        return True
    log.error(
        "the homeserver cannot reach the appservice endpoint: %s %s (is the registration's url "
        "right, and the port open to the homeserver?)",
        resp.status,
        answer,
    )
    return False
