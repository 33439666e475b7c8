"""Errors meant for the person who sent the command: one type, carrying the template to answer.

A handler, conversation step or hook raises :class:`UserError` when it must refuse. The
dispatcher is the one place that turns it into a reply: it rolls back everything the event
had done so far (nothing half-written), marks the event handled and answers with the template.
"""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """Refuse with ``template`` rendered from ``values`` (an m.notice reply to the sender)."""

    def __init__(self, template: str, /, **values: Any) -> None:
        super().__init__(f"{template}: {values}")
        self.template = template
        self.values = values
