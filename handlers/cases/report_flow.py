"""The report conversation hazards and accidents share: which enterprise, the questions, the
evidence (photos, voice notes, documents), and filing the case once the last answer is in.

A module declares its conversation (the questions, in order) and a :class:`ReportFlow` over it;
the flow gives the shared steps their functions (``text``, ``choice``, ``photos``; the
enterprise pick itself), and the module writes the steps that read something of their own (a
grade, a deadline, a time). Every question gets what the report knows so far (``step.data``:
the enterprise's name, the categories to list …) besides its own values.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from bot import conversation, evidence
from bot.commands import Arg, Handler, Text, command
from bot.context import CommandContext
from bot.conversation import Conversation, Incoming, Step, text_step
from bot.evidence import PHOTO, Evidence, Refused
from bot.words import FINISHED, choose, is_in
from handlers.cases.actors import Actor, actor_of
from handlers.cases.refusals import CaseError, end_refused
from handlers.cases.report_enterprise import enterprise_here, pick_option, reportable
from handlers.cases.threads import CaseThreads
from storage import cases
from storage.cases import CaseRow
from storage.directory import GRID_STAFF
from storage.hazard_categories import OTHER

# Files the case from the answers ({enterprise_id, enterprise, …}); returns it and the kinds of
# upper room that were missing (the reporter is told to phone them).
Filer = Callable[[CaseThreads, Actor, dict[str, Any]], Awaitable[tuple[CaseRow, list[str]]]]
# What else the questions need of the chosen enterprise (e.g. the categories to pick from).
Extras = Callable[[CommandContext, int], Awaitable[dict[str, Any]]]
# What a case command does with the text after it.
Named = Callable[[CommandContext, str], Awaitable[None]]


def evidence_of(msg: Incoming, sender: str) -> Evidence | Refused | None:
    """A file message read as evidence (bot.evidence: a photo, a voice note or a document),
    stamped with its event, sender and time; a Refused for a file that is not taken; None
    when the message carries no file."""
    if msg.media is None:
        return None
    got = evidence.take(msg.media)
    if isinstance(got, Refused):
        return got
    stamp = {"event_id": msg.event_id, "by": sender, "at": datetime.now(UTC).isoformat()}
    return Evidence(got.kind, {**got.item, **stamp})


def took_evidence(step: Step, msg: Incoming) -> bool:
    """Keep a photo (``step.data["photos"]``), voice note or document (``step.data["files"]``)
    the sender sent and say how many there are, or say why a file is not taken; False when the
    message carries no file."""
    got = evidence_of(msg, step.ctx.sender)
    if got is None:
        return False
    if isinstance(got, Evidence):
        step.data.setdefault("photos" if got.kind == PHOTO else "files", []).append(got.item)
    step.reply(
        "case_evidence_received",
        photos=len(step.data.get("photos") or []),
        files=list(step.data.get("files") or []),
        refused=got.reason if isinstance(got, Refused) else None,
    )
    return True


def chosen_or_other(options: Sequence[str], text: str) -> str | None:
    """The option picked by number or name, or "其他：说明" for an answer "其他 说明"."""
    index = choose(options, text).one
    if index is not None:
        return options[index]
    if text.startswith(OTHER) and len(text) > len(OTHER):
        return f"{OTHER}：{text[len(OTHER) :].strip(' :：')}"
    return None


class ReportFlow:
    """The report conversation ``conv`` of a kind of case: its first question is the first
    counted one (once the enterprise is known); template ``<kind>_ask`` words every question
    (``step`` names it), ``<kind>_reported`` is the answer (with the ``case``) when it was
    posted in another room or an upper room is missing."""

    def __init__(self, conv: Conversation, kind: str, *, file: Filer, extras: Extras) -> None:
        self.conversation = conv
        self.kind = kind
        self.first = next(a.name for a in conv.steps if a.counted)
        self.template = f"{kind}_ask"
        self.reported = f"{kind}_reported"
        self.file = file
        self.extras = extras
        conv.step("enterprise")(self._pick_enterprise)

    def command(
        self, name: str, alias: str, *, arg: Text, summary: Text, details: Text, then: Named
    ) -> Handler:
        """The command of this kind of case (/hazard, /accident), for anyone with a role in the
        grid: without arguments it starts the report; ``then`` handles what follows it (a case
        code and a step, say)."""

        async def report_or_act(ctx: CommandContext) -> None:
            text = (ctx.args.get("text") or "").strip()
            if text:
                await then(ctx, text)
            else:
                await self.start(ctx)

        report_or_act.__name__ = report_or_act.__qualname__ = f"{name}_command"
        text_arg = Arg(arg, required=False, rest=True, key="text")
        return command(
            name,
            aliases=(alias,),
            summary=summary,
            details=details,
            args=(text_arg,),
            roles=GRID_STAFF,
        )(report_or_act)

    def ask(self, step: Step, name: str, again: bool = False, **values: Any) -> None:
        """Ask question ``name`` (``again`` after an answer that did not fit)."""
        step.ask(name, self.template, step=name, again=again, **{**step.data, **values})

    # --- starting -------------------------------------------------------------------------------

    async def start(self, ctx: CommandContext) -> None:
        """The command without arguments: ask the first question about the room's (or the
        sender's only) enterprise, or ask which enterprise first."""
        options = await reportable(ctx)
        if not options:
            raise CaseError("no_enterprise", "", self.kind)
        ent = await enterprise_here(ctx, options)
        if ent is not None:
            await self.start_at(ctx, ent.id, ent.name, self.first)
            return
        data = {"options": [[e.id, e.name] for e in options]}
        await self._begin(ctx, "enterprise", data)

    async def start_at(
        self, ctx: CommandContext, enterprise_id: int, name: str, state: str, **known: Any
    ) -> None:
        """Start at question ``state`` about a known enterprise, with some answers ``known``."""
        await self._begin(ctx, state, {**await self._about(ctx, enterprise_id, name), **known})

    async def _begin(self, ctx: CommandContext, state: str, data: dict[str, Any]) -> None:
        await conversation.start(ctx, self.conversation, state, data)
        progress = self.conversation.progress(state)
        ctx.reply(self.template, step=state, again=False, progress=progress, **data)

    async def _about(self, ctx: CommandContext, enterprise_id: int, name: str) -> dict[str, Any]:
        return {"enterprise_id": enterprise_id, "enterprise": name} | await self.extras(
            ctx, enterprise_id
        )

    async def _pick_enterprise(self, step: Step, msg: Incoming) -> None:
        chosen = pick_option(step.data["options"], msg.text)
        if chosen is None:
            self.ask(step, "enterprise", again=True)
            return
        step.data = await self._about(step.ctx, chosen[0], chosen[1])
        self.ask(step, self.first)

    # --- the shared kinds of question -----------------------------------------------------------

    def text(self, state: str, *, key: str, then: str, place: bool = False) -> None:
        """A question answered in words, kept under ``key`` (a ``place`` question also takes
        a shared location)."""
        text_step(self.conversation, state, key=key, then=then, ask=self.ask, place=place)

    def choice(self, state: str, *, key: str, listed: str, then: str) -> None:
        """A pick from the options the report lists under ``listed``, or "其他 说明"."""
        self.conversation.ask(then)

        async def pick(step: Step, msg: Incoming) -> None:
            chosen = chosen_or_other(step.data[listed], msg.text)
            if chosen is None:
                self.ask(step, state, again=True)
                return
            step.data[key] = chosen
            self.ask(step, then)

        pick.__name__ = f"ask_{state}"
        self.conversation.step(state)(pick)

    def photos(self, state: str, *, then: str | None = None) -> None:
        """Photos, voice notes and documents, any number, until a FINISHED word; then question
        ``then``, or (None) the report is filed."""
        if then is not None:
            self.conversation.ask(then)

        async def collect(step: Step, msg: Incoming) -> None:
            if took_evidence(step, msg):
                return
            if not is_in(msg.text, FINISHED):
                self.ask(step, state, again=True)
            elif then is not None:
                self.ask(step, then)
            else:
                await self.finish(step, step.data)

        collect.__name__ = f"ask_{state}"
        self.conversation.step(state)(collect)

    # --- filing ---------------------------------------------------------------------------------

    async def finish(self, step: Step, data: dict[str, Any]) -> None:
        """The last answer is in: file the case and end the conversation."""
        ctx = step.ctx
        if all(e.id != data["enterprise_id"] for e in await reportable(ctx)):
            end_refused(step, CaseError("no_enterprise", "", self.kind))  # roles changed meanwhile
            return
        step.end()
        case, missing = await self.file(CaseThreads(ctx), await actor_of(ctx), data)
        home = await cases.home_room(ctx.session, case.code)
        if home != ctx.room_id or missing:
            step.reply(
                self.reported,
                case=case,
                enterprise=data["enterprise"],
                missing=missing,
                elsewhere=home != ctx.room_id,
            )
