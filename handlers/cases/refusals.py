"""Why a case step cannot be taken: a :class:`UserError` answered with template case_error.

The rules raise :class:`CaseError`; the dispatcher rolls back what the event had done and
answers the sender once. Only a conversation's last step catches it, to end the conversation
(see :func:`end_refused`).
"""

from __future__ import annotations

from typing import Any

from bot.conversation import Step
from bot.errors import UserError


class CaseError(UserError):
    """Refuse a case step; ``reason`` picks the sentence of template case_error (``values``
    fill it in as ``v``)."""

    def __init__(self, reason: str, code: str = "", kind: str = "", **values: Any) -> None:
        super().__init__("case_error", reason=reason, code=code, kind=kind, v=values)
        self.reason = reason


def end_refused(step: Step, refusal: UserError) -> None:
    """End a conversation whose final answer was refused, and say why. Raised from the step,
    the refusal would roll the conversation back to that step, to be refused at every answer.
    The rules check before they change anything, so nothing is half-written."""
    step.end()
    step.reply(refusal.template, **refusal.values)
