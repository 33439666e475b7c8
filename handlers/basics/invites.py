"""Invites: join when a roster member or an admin invites the bot; decline anyone else."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from nio import AsyncClient, JoinResponse

from bot.context import Services
from bot.outgoing import Outgoing, queue
from bot.syncer import Invite
from storage import outbox, rooms
from storage.db import Database
from storage.directory import active_matrix_ids, identify

log = logging.getLogger(__name__)


@dataclass
class InviteHandler:
    client: AsyncClient
    db: Database
    services: Services

    async def __call__(self, invite: Invite) -> None:
        async with self.db.transaction() as session:
            allowed = invite.inviter in self.services.admins or invite.inviter in (
                await active_matrix_ids(session)
            )
        if not allowed:
            log.info(
                "declining invite to %s from %s (not in roster)", invite.room_id, invite.inviter
            )
            await self.client.room_leave(invite.room_id)
            return
        resp = await self.client.join(invite.room_id)
        if not isinstance(resp, JoinResponse):
            log.warning("could not join %s: %s", invite.room_id, resp)
            return
        log.info("joined %s on invite from %s", invite.room_id, invite.inviter)
        await self._welcome(invite)

    async def _welcome(self, invite: Invite) -> None:
        # A fixed txn id per room and inviter: a repeated invite never queues a second welcome.
        key = hashlib.sha256(f"{invite.room_id}|{invite.inviter}".encode()).hexdigest()[:32]
        txn_id = f"welcome-{key}"
        async with self.db.transaction() as session:
            if invite.is_direct:
                info = await rooms.get(session, invite.room_id)
                if info is None:
                    await rooms.record_join(session, invite.room_id, 0, None, kind="direct")
            if await outbox.exists(session, txn_id):
                return
            ident = await identify(session, invite.inviter, self.services.admins)
            locale = ident.language or self.services.config.language
            message = Outgoing(
                invite.room_id,
                "joined",
                {"name": ident.display_name, "direct": invite.is_direct},
                txn_id=txn_id,
            )
            queue(session, self.services.messages, message, locale=locale, cause=invite.inviter)
