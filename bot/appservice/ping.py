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


async def ping_homeserver(
    client: AsyncClient, appservice_id: str, *, tries: int = 3, pause: float = 1.0
) -> bool:
    """Whether the homeserver reached the endpoint; logged either way, never raised.

    A failed ping is tried again: Synapse's first request to an endpoint it found down can fail
    on its own side (seen: 502 ``M_CONNECTION_FAILED``, "AlreadyCalled") while the next works."""
    for attempt in range(1, tries + 1):
        status, answer, took = await _ping(client, appservice_id)
        if status == 200:
            log.info(
                "the homeserver reaches the appservice endpoint (ping %.0f ms, round trip %.0f ms)",
                float((answer or {}).get("duration_ms", 0)),
                took * 1000,
            )
            return True
        if attempt < tries:
            log.info("appservice ping failed (%s %s); trying again", status, answer)
            await asyncio.sleep(pause)
    log.error(
        "the homeserver's ping of the appservice endpoint failed %d times, last: %s %s (if it "
        "could not connect: is the registration's url right, and the port open to it?); "
        "transactions it holds back come with its next retry",
        tries,
        status,
        answer,
    )
    return False


async def _ping(client: AsyncClient, appservice_id: str) -> tuple[int | None, object, float]:
    """(HTTP status or None when the homeserver did not answer, its answer, seconds)."""
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
        return None, repr(exc), time.monotonic() - start
    return resp.status, answer, time.monotonic() - start
