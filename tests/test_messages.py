"""Templates: every message exists in both locales, and user text is escaped in the HTML body."""

from __future__ import annotations

from pathlib import Path

import pytest

from messages import LOCALES, Messages

ROOT = Path(__file__).resolve().parent.parent / "messages"


def _names(locale: str) -> set[str]:
    return {p.stem for p in (ROOT / locale).glob("*.j2") if not p.stem.startswith("_")}


def test_every_template_exists_in_every_locale() -> None:
    zh, en = _names("zh_CN"), _names("en")
    assert zh, "no templates found"
    assert zh - en == set(), f"missing in en: {sorted(zh - en)}"
    assert en - zh == set(), f"missing in zh_CN: {sorted(en - zh)}"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_template_has_plain_and_html_blocks(locale: str) -> None:
    for path in sorted((ROOT / locale).glob("*.j2")):
        if path.stem.startswith("_"):
            continue
        text = path.read_text(encoding="utf-8")
        assert "{% block plain %}" in text, path.name
        assert "{% block html %}" in text, path.name


def test_user_text_is_escaped_in_html_but_kept_in_plain() -> None:
    hostile = '<img src=x onerror="alert(1)">张三'
    out = Messages().render("zh_CN", "whoami_stranger", user_id=hostile)
    assert hostile in out.plain
    assert "<img" not in out.html and "&lt;img src=x" in out.html
    assert out.content()["format"] == "org.matrix.custom.html"
    assert out.content()["msgtype"] == "m.notice"


def test_unknown_locale_falls_back_to_chinese() -> None:
    out = Messages().render("fr", "nothing_to_cancel")
    assert out.plain == "当前没有进行中的对话。"
