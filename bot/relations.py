"""What an incoming event says it relates to (``m.relates_to``), read defensively: anyone can
put anything in an event's content, so a malformed relation is no relation, never a crash."""

from __future__ import annotations

from typing import Any


def relation(content: dict[str, Any]) -> dict[str, Any]:
    """``m.relates_to`` of a content, or {} when it is absent or not an object."""
    rel = content.get("m.relates_to")
    return rel if isinstance(rel, dict) else {}


def _event_id(value: object) -> str | None:
    return value if isinstance(value, str) and value.startswith("$") else None


def related_id(content: dict[str, Any]) -> str | None:
    """The event a relation (edit, reaction, thread) points at."""
    return _event_id(relation(content).get("event_id"))


def is_edit(content: dict[str, Any]) -> bool:
    return relation(content).get("rel_type") == "m.replace"


def replied_to(content: dict[str, Any]) -> str | None:
    """The event a message replies to (``m.in_reply_to``), inside a thread or not."""
    reply = relation(content).get("m.in_reply_to")
    return _event_id(reply.get("event_id")) if isinstance(reply, dict) else None


def thread_root(content: dict[str, Any]) -> str | None:
    rel = relation(content)
    return _event_id(rel.get("event_id")) if rel.get("rel_type") == "m.thread" else None


def answered(content: dict[str, Any]) -> list[str]:
    """The events a message answers: its thread root and the event it replies to."""
    return [e for e in (thread_root(content), replied_to(content)) if e is not None]
