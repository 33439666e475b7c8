"""Tap to answer: the reactions the bot seeds under a question with a fixed set of answers, and
what each tap means as typed text. A tap then answers the step exactly as typing would.

Which keys a question gets follows from what its step expects (bot.conversation.Expect):
a pick among at most ten listed options gets 1️⃣…🔟, a confirmation ✅/❌, a photo step ✅ (done),
a file or location step ⏭️ (skip). Keys are compared without emoji variation selectors, since
clients differ in sending "✅" or "✅\ufe0f".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

KEYCAPS: tuple[str, ...] = (
    "1️⃣",
    "2️⃣",
    "3️⃣",
    "4️⃣",
    "5️⃣",
    "6️⃣",
    "7️⃣",
    "8️⃣",
    "9️⃣",
    "🔟",
)
YES, NO, SKIP = "✅", "❌", "⏭️"

# The typed answer each tap stands for, per kind of question (words from bot.words' sets).
CONFIRM_TAPS: Mapping[str, str] = {YES: "确认", NO: "取消"}
DONE_TAPS: Mapping[str, str] = {YES: "完成"}
SKIP_TAPS: Mapping[str, str] = {SKIP: "跳过"}


def numbered(options: Sequence[Any] | None) -> dict[str, str]:
    """1️⃣…🔟 for a list of at most ten options (more would not fit under one message)."""
    count = len(options or ())
    if not 1 <= count <= len(KEYCAPS):
        return {}
    return {KEYCAPS[i]: str(i + 1) for i in range(count)}


def bare(key: str) -> str:
    """A reaction key without variation selectors, for comparing what clients send."""
    return key.replace("\ufe0f", "").strip()


def answer(taps: Mapping[str, str], key: object) -> str | None:
    """The typed answer a tapped ``key`` stands for, or None when it is not one of ``taps``."""
    if not isinstance(key, str):
        return None
    wanted = bare(key)
    return next((text for k, text in taps.items() if bare(k) == wanted), None)
