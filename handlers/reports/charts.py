"""The picture posted with every report (matplotlib, Agg, no pyplot): visit coverage per
month, hazards found and closed per month, and for several counties (or grids) the units
compared by score.

matplotlib ships no CJK font, so the Noto Sans CJK collection that the ``noto-cjk-sans-otc``
package installs (a main dependency) is registered with matplotlib's font manager on first
use; its Simplified Chinese face is used, DejaVu Sans (matplotlib's own) for what it lacks.
"""

from __future__ import annotations

import importlib.resources
import io
import threading
from typing import Any

from handlers.reports.model import Report
from handlers.reports.xlsx import _t

CJK_FAMILY = "Noto Sans CJK SC"
FAMILIES = [CJK_FAMILY, "DejaVu Sans"]
# Units shown in the comparison panel (the workbook has them all).
MAX_UNITS = 40

_lock = threading.Lock()
_fonts_ready = False


def register_fonts() -> str | None:
    """Register the packaged CJK font's Simplified Chinese face with matplotlib, once; its
    file, or None if it is missing.

    ``font_manager.addfont`` would parse all ten faces of the 19 MB collection (about 2 s
    here); finding the face by name with FreeType and adding its entry takes milliseconds."""
    global _fonts_ready
    from matplotlib import font_manager, ft2font

    try:
        import noto_cjk_sans_otc
    except ImportError:  # pragma: no cover - a main dependency
        return None
    path = str(importlib.resources.files(noto_cjk_sans_otc).joinpath(noto_cjk_sans_otc.FONT_FILE))
    if _fonts_ready:
        return path
    first = ft2font.FT2Font(path)
    for index in range(first.num_faces):
        face = first if index == 0 else ft2font.FT2Font(path, face_index=index)
        if face.family_name == CJK_FAMILY:
            entry = font_manager.FontEntry(
                fname=path, index=index, name=CJK_FAMILY, weight=400, size="scalable"
            )
            font_manager.fontManager.ttflist.append(entry)
            font_manager.fontManager._findfont_cached.cache_clear()
            break
    else:  # another layout of the collection: let matplotlib read it all
        font_manager.fontManager.addfont(path)
    _fonts_ready = True
    return path


def png(report: Report, locale: str, title: str) -> bytes:
    """The chart as PNG bytes. Thread-safe (one figure at a time)."""
    with _lock:
        return _draw(report, locale, title)


def _draw(report: Report, locale: str, title: str) -> bytes:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    register_fonts()
    units = [r for r in report.rows if r.score is not None][:MAX_UNITS] if report.ranked else []
    panels = 2 + (1 if len(units) > 1 else 0)
    heights = [3.0, 3.0] + ([max(2.5, 0.28 * len(units) + 1.0)] if panels == 3 else [])
    total = sum(heights) + 1.0
    with matplotlib.rc_context(
        {"font.family": FAMILIES, "axes.unicode_minus": False, "font.size": 10}
    ):
        fig = Figure(figsize=(10, total), dpi=100)
        FigureCanvasAgg(fig)
        # Fixed margins (in inches turned into fractions): tight_layout would draw every text
        # once more to measure it, which doubles the time.
        longest = max((len(f"{u.rank}. {u.name}") for u in units), default=0)
        fig.subplots_adjust(
            left=max(0.07, (0.3 + 0.14 * longest) / 10),
            right=0.95,
            top=1 - 0.8 / total,
            bottom=0.4 / total,
            hspace=0.9 / (sum(heights) / panels),
        )
        axes = fig.subplots(panels, 1, gridspec_kw={"height_ratios": heights})
        fig.suptitle(title, fontsize=13, y=1 - 0.25 / total)
        _visits(axes[0], report, locale)
        _hazards(axes[1], report, locale)
        if panels == 3:
            _units(axes[2], units, locale)
        out = io.BytesIO()
        # Fast zlib: the picture is drawn per report; size hardly changes for flat charts.
        fig.savefig(out, format="png", pil_kwargs={"compress_level": 3})
    return out.getvalue()


def _visits(ax: Any, report: Report, locale: str) -> None:
    labels = [p.label[2:] for p in report.trend]
    rates = [100 * p.visit_rate if p.visit_rate is not None else 0 for p in report.trend]
    bars = ax.bar(labels, rates, color="#2F75B5")
    for bar, point in zip(bars, report.trend, strict=True):
        text = "—" if point.visit_rate is None else f"{round(100 * point.visit_rate)}%"
        ax.annotate(
            text,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylim(0, 110)
    ax.set_ylabel("%")
    ax.set_title(_t("chart_visits", locale))
    ax.grid(axis="y", alpha=0.3)


def _hazards(ax: Any, report: Report, locale: str) -> None:
    labels = [p.label[2:] for p in report.trend]
    xs = range(len(labels))
    width = 0.38
    found = [p.found for p in report.trend]
    closed = [p.closed for p in report.trend]
    ax.bar([x - width / 2 for x in xs], found, width, label=_t("found", locale), color="#C00000")
    ax.bar([x + width / 2 for x in xs], closed, width, label=_t("closed", locale), color="#70AD47")
    ax.set_xticks(list(xs), labels)
    ax.set_title(_t("chart_hazards", locale))
    ax.legend(loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    top = max([*found, *closed, 1])
    ax.set_ylim(0, top * 1.2)
    ax.yaxis.get_major_locator().set_params(integer=True)


def _units(ax: Any, units: list[Any], locale: str) -> None:
    names = [f"{u.rank}. {u.name}" for u in units]
    scores = [u.score for u in units]
    ax.barh(names, scores, color="#2F75B5", height=0.6)
    ax.invert_yaxis()
    ax.set_xlim(0, 108)
    for y, s in enumerate(scores):
        ax.annotate(f"{s:.1f}", (s, y), xytext=(3, 0), textcoords="offset points", va="center")
    ax.set_title(_t("chart_units", locale))
    ax.grid(axis="x", alpha=0.3)
