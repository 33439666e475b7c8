"""Interleaved measurement and the statistics every benchmark reports.

A benchmark that compares GridBot with a baseline runs them in alternating rounds, not one
after the other: whatever else the machine does (other test runs on a shared 2-core VM, a
homeserver whose database grows) then slows both alike, and the *ratio* holds where raw times
do not. ``interleave`` runs every contender once per round and reverses the order every other
round (A B, B A, A B, …), so a steady drift also lands on both sides evenly.

``Stats`` holds one contender's samples (median, p90, …); ``Result`` is one row of the summary
table ``bench/run.py`` prints: GridBot against its baseline, or against an absolute ceiling.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# Below this many samples a p90 is just the largest sample or two: not shown.
P90_MIN_SAMPLES = 10

Measure = Callable[[], Awaitable[float | Sequence[float]]]


@dataclass
class Stats:
    """Samples of one measure, in the unit the row shows (ms, s, MB)."""

    samples: list[float] = field(default_factory=list)
    rounds: list[list[float]] = field(default_factory=list)  # the samples, round by round

    @classmethod
    def of(cls, samples: Iterable[float]) -> Stats:
        values = list(samples)
        return cls(values, [values])

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan

    def pct(self, q: float) -> float:
        """The q-th percentile (0–100), interpolated between samples."""
        if not self.samples:
            return math.nan
        if len(self.samples) == 1:
            return self.samples[0]
        ordered = sorted(self.samples)
        pos = (len(ordered) - 1) * q / 100
        lo = math.floor(pos)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    @property
    def p90(self) -> float:
        return self.pct(90)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples) if self.samples else math.nan

    @property
    def min(self) -> float:
        return min(self.samples) if self.samples else math.nan

    @property
    def max(self) -> float:
        return max(self.samples) if self.samples else math.nan

    @property
    def total(self) -> float:
        return math.fsum(self.samples)


def paired_ratios(a: Stats, b: Stats) -> list[float]:
    """Round by round: median of ``a``'s round over median of ``b``'s same round."""
    return [
        statistics.median(x) / statistics.median(y)
        for x, y in zip(a.rounds, b.rounds, strict=False)
        if x and y and statistics.median(y)
    ]


async def interleave(
    contenders: Mapping[str, Measure],
    rounds: int,
    *,
    between: Callable[[], Awaitable[None]] | None = None,
    progress: Callable[[int, str, list[float]], None] | None = None,
) -> dict[str, Stats]:
    """Run every contender once per round, ``rounds`` times, alternating their order.

    A measure returns one sample or several (a batch of round trips). ``between`` runs after
    each measure (e.g. wait until a bot is idle again) and is not timed; ``progress`` is told
    (round, name, samples) after each.
    """
    names = list(contenders)
    stats = {name: Stats() for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            got = await contenders[name]()
            values = [float(got)] if isinstance(got, int | float) else [float(v) for v in got]
            stats[name].rounds.append(values)
            stats[name].samples.extend(values)
            if progress is not None:
                progress(r + 1, name, values)
            if between is not None:
                await between()
    return stats


@dataclass
class Result:
    """One row of the summary: GridBot's figure, its baseline's, and the target.

    With a baseline the target is a ceiling on the ratio of medians (GridBot / baseline);
    without one it is a ceiling on GridBot's own figure (``by``: its median or its maximum).
    ``target=None`` makes an informative row that neither passes nor fails.
    """

    bench: str
    measure: str
    unit: str
    gridbot: Stats
    baseline: Stats | None = None
    baseline_name: str = ""
    target: float | None = None
    by: str = "median"  # "median" or "max": which of GridBot's figures an absolute target bounds
    note: str = ""
    verdict: bool | None = None  # pass/fail decided elsewhere (a bench run as its own process)

    @property
    def value(self) -> float:
        return self.gridbot.max if self.by == "max" else self.gridbot.median

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline.median:
            return None
        return self.gridbot.median / self.baseline.median

    @property
    def passed(self) -> bool | None:
        if self.verdict is not None:
            return self.verdict
        if self.target is None:
            return None
        if self.baseline is not None:
            ratio = self.ratio
            return ratio is not None and ratio <= self.target
        return self.value < self.target

    def target_text(self) -> str:
        if self.target is None:
            return ""
        if self.baseline is not None:
            return f"≤ {self.target:g}×"
        return f"< {self.target:g} {self.unit}"


def fmt(value: float, unit: str = "") -> str:
    """Three significant figures, the unit after."""
    if value is None or math.isnan(value):
        return "–"
    if abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".rstrip()


def _figure(stats: Stats | None, unit: str, by: str = "median") -> str:
    if stats is None or not stats.samples:
        return ""
    if by == "max":
        return f"max {fmt(stats.max, unit)}"
    text = fmt(stats.median, unit)
    if stats.n >= P90_MIN_SAMPLES:
        text += f" / {fmt(stats.p90, unit)}"
    return text


def summary_lines(results: Sequence[Result]) -> list[str]:
    """The one table of every result: GridBot vs baseline, ratio, target, pass/fail."""
    head = (
        "bench",
        "measure",
        "n",
        "GridBot median / p90",
        "baseline median / p90",
        "ratio",
        "target",
        "result",
    )
    rows = [head]
    for r in results:
        base = _figure(r.baseline, r.unit)
        if base and r.baseline_name:
            base = f"{r.baseline_name}: {base}"
        ratio = r.ratio
        verdict = {True: "pass", False: "FAIL", None: ""}[r.passed]
        rows.append(
            (
                r.bench,
                r.measure,
                str(r.gridbot.n) if r.gridbot.n else "",
                _figure(r.gridbot, r.unit, r.by),
                base,
                f"{ratio:.2f}" if ratio is not None else "",
                r.target_text(),
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    right = {2, 5}
    lines = []
    for k, row in enumerate(rows):
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [f"  {r.bench} / {r.measure}: {r.note}" for r in results if r.note]
    if notes:
        lines.append("")
        lines.extend(notes)
    return lines


def print_summary(results: Sequence[Result], title: str = "") -> None:
    print()
    if title:
        print(title)
    for line in summary_lines(results):
        print(line)


def failed(results: Iterable[Result]) -> list[Result]:
    return [r for r in results if r.passed is False]
