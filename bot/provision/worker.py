"""Provisioning inside the running bot: runs when a handler queued a request (e.g. a confirmed
staff change), with the bot's own client. Requests live in the database, so one queued just
before a crash is carried out after the restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nio import AsyncClient

from bot.context import Services
from bot.provision import store
from bot.provision.apply import Provisioner, Summary
from bot.provision.chat import ChatProgress
from bot.provision.matrix import MatrixOps
from storage.db import Database, describe, is_unavailable

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
# A request whose reason starts so names the progress message to edit (handlers/admin).
CHAT_REASON = "admin-import:"
MAX_BACKOFF = 300.0
DB_BACKOFF = 5.0


class ProvisionWorker:
    def __init__(
        self, client: AsyncClient, db: Database, services: Services, *, poll: float = POLL_SECONDS
    ) -> None:
        self.client = client
        self.db = db
        self.services = services
        self.poll = poll

    async def run(self, stopping: asyncio.Event) -> None:
        delay = self.poll
        while not stopping.is_set():
            try:
                summary = await self.run_pending()
                delay = self.poll if summary is None or summary.ok else min(delay * 2, MAX_BACKOFF)
            except Exception as exc:
                if is_unavailable(exc):
                    # Requests stay queued in the database: look again soon after it is back.
                    log.warning("provisioning waits for the database (%s)", describe(exc))
                    delay = min(max(delay, 1.0) * 2, DB_BACKOFF)
                else:
                    log.exception("provisioning failed; retrying")
                    delay = min(max(delay, 1.0) * 2, MAX_BACKOFF)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=delay)

    async def run_pending(self) -> Summary | None:
        """One run for every request queued so far; they stay queued if a room failed."""
        ids = await store.pending_requests(self.db)
        if not ids:
            return None
        config = self.services.config
        # An admin room import waits for the result in one message edited in place.
        chats = [
            ChatProgress(
                self.db, self.services.messages, reason[len(CHAT_REASON) :], config.language
            )
            for reason in await store.request_reasons(self.db, ids)
            if reason.startswith(CHAT_REASON)
        ]
        reporter = chats[-1] if chats else None
        async with reporter or contextlib.nullcontext():
            summary = await Provisioner(
                self.db,
                MatrixOps(self.client),
                self.services.messages,
                bot_user_id=config.user_id,
                admins=config.admins,
                locale=config.language,
                reporter=reporter,
                encrypted=config.encryption.enabled and config.encryption.encrypted_rooms,
            ).run()
        for chat in chats:
            await chat.finish(summary)
        log.info(
            "provisioned: %d created, %d invited, %d removed, %d failed",
            len(summary.created),
            len(summary.invited),
            len(summary.removed),
            len(summary.failed),
        )
        if summary.ok:
            await store.mark_requests_done(self.db, ids)
        return summary
