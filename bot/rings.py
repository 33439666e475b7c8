"""What rings a phone: the one table of the messages that ring, where they go and whom they
ring. README.md's "Who is notified (推送)" table is generated from it.

Synapse's default push rules mute every ``m.notice`` (``.m.rule.suppress_notices``) and ring
whoever an ``m.text`` names in ``m.mentions.user_ids`` (``.m.rule.is_user_mention``: sound and
highlight). So the rule is:

- a message that asks people to act, or tells them something they must not miss, **rings**: it
  is queued with ``rings=True`` and sent as ``m.text`` with intentional mentions of exactly the
  people who must act (their names are in its text too, as pills in the HTML, for clients that
  show no mentions). Its template is in :data:`RINGS`, which says to whom;
- everything else (the answer to a person's own command, steps shown for the record, news to
  whoever asked) is an ``m.notice``; and never ``@room``.

``bot.outgoing.queue``, the one send path, holds every message to this table
(:func:`check`): a template not in it cannot ring, and a template that always rings cannot be
sent quietly. It also rings each person at most once per triggering event (see
``bot.outgoing.rung``). ``python -m bot.rings`` rewrites README's table; ``--check`` exits 1
when it is stale (tests/test_rings_unit.py checks the same).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from bot import readme as readme_tables

TABLE = "rings"


@dataclass(frozen=True)
class To:
    """One room a message goes to and whom it rings there; ``when`` says when it rings, if it
    does only sometimes (otherwise it is a quiet notice then)."""

    room: str
    who: str
    when: str = ""


@dataclass(frozen=True)
class Ring:
    """A kind of message that rings (README: what it is, 中文 first)."""

    kind: str
    to: tuple[To, ...]

    @property
    def always(self) -> bool:
        """Whether it rings whenever it is sent (no ``when`` anywhere)."""
        return not any(t.when for t in self.to)


ENT, L2, L1 = "enterprise room", "level-2 room", "level-1 room"
SERVING = "the level-2 member(s) serving the enterprise"
ENT_CONTACTS = "its chief (its members when it has no chief with a Matrix id)"
ISSUER = "the issuer (the calendar's reminders have none: a notice)"
ISSUER_ROOM = "where it was issued (admin room for the calendar)"
OR_DM = " (each one's direct chat, without one)"
GAPS = "a visit is missing or an enterprise has no member"

# template → whom it rings. Ordered as README shows it: notices, cases, duties, staff.
RINGS: dict[str, Ring] = {
    # --- notices down the grid (handlers/notices/) ---
    "notice_post": Ring("通知 notice (post) to acknowledge", (To(ENT, ENT_CONTACTS),)),
    "notice_reminder": Ring(
        "通知催办 notice reminder before the deadline", (To(ENT, ENT_CONTACTS),)
    ),
    "notice_summary": Ring(
        "通知到期汇总 notice report at its deadline", (To(ISSUER_ROOM, ISSUER),)
    ),
    "notice_undelivered": Ring(
        "通知无法送达 rooms a notice cannot reach", (To(ISSUER_ROOM, ISSUER),)
    ),
    "notice_escalate_member": Ring(
        "通知逾期催办 enterprises still silent after the deadline",
        (To(L2, f"{SERVING} (the level-2 chief for enterprises nobody serves)"),),
    ),
    "notice_escalate_chief": Ring(
        "通知逾期报网格长 still silent, to the chief", (To(L2, "the level-2 chief"),)
    ),
    "notice_escalate_no_room": Ring(
        "通知逾期无群 silent enterprises of a grid without a level-2 room",
        (To(ISSUER_ROOM, ISSUER),),
    ),
    # --- cases (handlers/cases/) ---
    "hazard_posted": Ring(
        "隐患上报 new hazard, to confirm",
        (To(f"{ENT} (where it was reported, without one)", SERVING),),
    ),
    "hazard_major_alert": Ring(
        "重大事故隐患 major hazard alert (reported or upgraded)",
        (
            To(L2, f"{SERVING} and the level-2 chief"),
            To(L1, "the level-1 chief and office"),
        ),
    ),
    "hazard_update": Ring(
        "隐患交办 hazard handed on (other steps: a notice)",
        (
            To(ENT, "its chief and members", "confirmed, or re-check failed: to rectify"),
            To(ENT, SERVING, "rectification submitted: to re-check"),
            To(L2, "the level-2 chief", "a major hazard's re-check passed: to close out"),
            To(L1, "the level-1 chief", "a major hazard's re-check passed: to close out"),
            To(ENT, "the level-2 and level-1 chiefs", "the same, with neither upper room"),
        ),
    ),
    "hazard_overdue": Ring(
        "隐患逾期 hazard overdue", (To(ENT, f"its chief and members, {SERVING}"),)
    ),
    "hazard_overdue_chief": Ring(
        "逾期隐患报网格长 overdue hazard escalated",
        (
            To(f"{L2} (the enterprise room, with no upper room)", "the level-2 chief"),
            To(L1, "the level-1 chief", "a major or supervised hazard"),
        ),
    ),
    "accident_posted": Ring("事故快报 accident report", (To(ENT, SERVING),)),
    "accident_alert": Ring(
        "事故快报 accident alert",
        (
            To(L2, f"{SERVING} and the level-2 chief"),
            To(L1, "the level-1 chief and office"),
        ),
    ),
    "request_alert": Ring(
        "问题诉求 request arriving at a level (raised, passed up, or up by itself)",
        (
            To(f"{L2} (the request's thread, without one)", SERVING, "at the member level"),
            To(f"{L2} (the same)", "the level-2 chief and office", "at level 2"),
            To(f"{L1} (the same)", "the level-1 chief and office", "at level 1"),
        ),
    ),
    "request_posted": Ring(
        "问题诉求 new request",
        (To(ENT, "those who must take it", "their level has no room of its own"),),
    ),
    "request_overdue": Ring(
        "诉求超时 request past level 1's deadline",
        (To(f"{L1} (the request's thread, without one)", "the level-1 chief and office"),),
    ),
    # --- duties (handlers/visits/) ---
    "visit_reminder": Ring(
        "走访提醒 visits still to make this month",
        (To(L2 + OR_DM, "the members with visits to make"),),
    ),
    "visit_gaps": Ring(
        "走访汇总 month's visit report",
        (To(L2 + OR_DM, "the level-2 chief", GAPS), To(L1 + OR_DM, "the level-1 office", GAPS)),
    ),
    "meeting_reminder": Ring(
        "会议提醒 quarterly safety meeting not held", (To(L2 + OR_DM, "the level-2 chief"),)
    ),
    "meeting_gaps": Ring(
        "会议汇总 quarter's meeting report",
        (To(L1 + OR_DM, "the level-1 chief", "a level-2 grid held no meeting"),),
    ),
    # --- training obligations (handlers/reports/jobs.py) ---
    # --- reports that are ready (handlers/reports/jobs.py) ---
    "report_summary": Ring(
        "自动报表 a scheduled report that is ready (answers to /report: a notice)",
        (
            To(L1, "the level-1 office", "the month's report, the annual draft"),
            To(L2, "the level-2 chief", "the quarter's report"),
        ),
    ),
    "training_due": Ring(
        "年度培训提醒 level-2 people not trained this year",
        (To(L1, "the level-1 office"),),
    ),
    "training_newcomers": Ring(
        "先培训后上岗 level-2 people with no training on record",
        (To(L1, "the level-1 office"),),
    ),
    # --- staff changes (handlers/staff/) ---
    "staff_declared": Ring(
        "人员变动 staff change to confirm",
        (
            To(
                f"{ENT} (a reply to the declaration)",
                f"{SERVING} and the level-2 chief",
                "someone may decide it",
            ),
        ),
    ),
}


def check(template: str | None, rings: bool) -> None:
    """Hold a message to the table: only its templates ring, and those that always ring are
    never sent quietly. ValueError otherwise (a programming error, like a missing template)."""
    ring = RINGS.get(template) if template is not None else None
    if rings and ring is None:
        raise ValueError(
            f"template {template!r} is queued to ring but is not in bot.rings.RINGS: add it "
            "there (whom it rings) or send it as a notice"
        )
    if not rings and ring is not None and ring.always:
        raise ValueError(f"template {template!r} always rings (bot.rings.RINGS): rings=True")


# --- README ------------------------------------------------------------------------------------

LEGEND = (
    "Each person is rung at most once per triggering event (a message to the bot, or one "
    "scheduled job): a later message of the same event still names them but no longer "
    "mentions them, and a ringing message left with nobody to ring is sent as a notice. The "
    "person whose message caused the event is not rung by it."
)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def table() -> str:
    lines = [
        "| kind of message | template | room | who is rung | rings when |",
        "|---|---|---|---|---|",
    ]
    for template, ring in RINGS.items():
        for i, to in enumerate(ring.to):
            kind, name = (ring.kind, f"`{template}`") if i == 0 else ("", "")
            row = [kind, name, to.room, to.who, to.when or "always"]
            lines.append("| " + " | ".join(_md(c) for c in row) + " |")
    return "\n".join(lines) + "\n\n" + LEGEND


def render(readme: str) -> str:
    """``readme`` with the table replaced by what :data:`RINGS` says now."""
    return readme_tables.replace_table(readme, "rings", TABLE, table())


def main(argv: list[str] | None = None) -> int:
    return readme_tables.regenerate(argv, module="rings", doc=__doc__ or "", render=render)


if __name__ == "__main__":
    sys.exit(main())
