"""Room names and topics rendered from messages/<locale>/room_name.j2 and room_topic.j2.

Only the plain block is rendered (names and topics are plain text): a province has tens of
thousands of rooms to name on every run.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

import messages
from messages import DEFAULT_LOCALE, Messages

# Synapse refuses names over 255 characters; topics have no such limit.
MAX_NAME = 255
_ROOT = Path(messages.__file__).parent


class TemplateTexts:
    def __init__(self, catalog: Messages, locale: str) -> None:
        if not catalog.has(locale, "room_name"):
            locale = DEFAULT_LOCALE
        env = Environment(
            loader=FileSystemLoader(str(_ROOT)),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        self._name = env.get_template(f"{locale}/room_name.j2")
        self._topic = env.get_template(f"{locale}/room_topic.j2")

    def name(self, kind: str, **values: object) -> str:
        return _plain(self._name, kind=kind, **values)[:MAX_NAME]

    def topic(self, kind: str, **values: object) -> str:
        return _plain(self._topic, kind=kind, **values)


def _plain(template: Template, **values: object) -> str:
    text = "".join(template.blocks["plain"](template.new_context(values)))
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())
