"""Outgoing texts: one Jinja2 template per message and locale, each with a plain and an HTML block.

``messages/<locale>/<name>.j2`` defines ``{% block plain %}`` and ``{% block html %}``. The HTML
block is rendered with autoescaping on, so user text put into it is escaped; the plain block is
not HTML and is rendered as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from bot.evidence import facts as evidence_facts
from bot.evidence import tally as evidence_tally
from storage.directory import role_label

LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"
_ROOT = Path(__file__).parent


@dataclass(frozen=True)
class Rendered:
    plain: str
    html: str

    def content(self, msgtype: str = "m.notice") -> dict[str, Any]:
        return {
            "msgtype": msgtype,
            "body": self.plain,
            "format": "org.matrix.custom.html",
            "formatted_body": self.html,
        }


def _tidy(text: str) -> str:
    # Templates are written readably; collapse the blank lines that block tags leave behind.
    lines = [ln.rstrip() for ln in text.strip("\n").splitlines()]
    out: list[str] = []
    for ln in lines:
        if ln == "" and out and out[-1] == "":
            continue
        out.append(ln)
    return "\n".join(out).strip()


class Messages:
    """Renders templates; falls back to the default locale when a locale lacks a template."""

    def __init__(self, root: Path = _ROOT) -> None:
        loader = FileSystemLoader(str(root))
        common = {
            "loader": loader,
            "undefined": StrictUndefined,
            "trim_blocks": True,
            "lstrip_blocks": True,
            "keep_trailing_newline": False,
            # Templates ship with the code: no stat() of every file on every render.
            "auto_reload": False,
        }
        self._plain = Environment(autoescape=False, **common)
        self._html = Environment(autoescape=True, **common)
        for env in (self._plain, self._html):
            # Role names come from the directory's one mapping (``_labels.j2`` role()).
            env.globals["role_label"] = role_label
            # Voice notes and documents kept as evidence (``_labels.j2`` evidence()).
            env.globals["evidence_facts"] = evidence_facts
            env.globals["evidence_tally"] = evidence_tally
        self._root = root
        # Which templates exist, read once (a render must not touch the disk).
        self._names = {
            (path.parent.name, path.stem) for path in root.glob("*/*.j2") if path.is_file()
        }

    def label(self, locale: str, macro: str, value: str) -> str:
        """One label from ``<locale>/_labels.j2`` (``role``, ``room``, ``conversation``)."""
        module = self._plain.get_template(f"{locale}/_labels.j2").module
        return str(getattr(module, macro)(value)).strip()

    def has(self, locale: str, name: str) -> bool:
        return (locale, name) in self._names

    def render(self, locale: str, name: str, /, **ctx: Any) -> Rendered:
        if locale not in LOCALES or not self.has(locale, name):
            locale = DEFAULT_LOCALE
        path = f"{locale}/{name}.j2"
        plain_t = self._plain.get_template(path)
        html_t = self._html.get_template(path)
        plain = "".join(plain_t.blocks["plain"](plain_t.new_context(ctx)))
        html = "".join(html_t.blocks["html"](html_t.new_context(ctx)))
        return Rendered(_tidy(plain), _tidy(html))

    def document(self, locale: str, name: str, /, **ctx: Any) -> str:
        """A whole document (``<locale>/documents/<name>.j2``, e.g. the annual work report as
        HTML), rendered with autoescaping; the default locale when the locale lacks it."""
        path = self._root / str(locale) / "documents" / f"{name}.j2"
        if locale not in LOCALES or not path.is_file():
            locale = DEFAULT_LOCALE
        return self._html.get_template(f"{locale}/documents/{name}.j2").render(**ctx)
