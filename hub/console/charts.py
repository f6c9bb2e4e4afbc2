"""Charts as server-rendered SVG: no JavaScript library, nothing fetched.

Each function returns ``Markup`` for a template: an ``<svg role="img">`` with an
``aria-label`` that says what it shows, and a ``<title>`` on every bar (the tooltip, and what
a screen reader reads). Colours come from classes in console.css (the page's CSP allows no
inline style).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

LEFT = 30
"""Room for the value axis' labels."""
BOTTOM = 18
"""Room for the time axis' labels."""


@dataclass(frozen=True)
class Series:
    """One stacked series of a time chart: its name, its CSS class, one value per slot."""

    name: str
    css: str
    values: Sequence[float]


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _nice_max(value: float) -> float:
    """The axis' top: the smallest 1, 2 or 5 times a power of ten at or above ``value``."""
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= value:
        step *= 10
    while step > value:
        step /= 10
    for factor in (1, 2, 5, 10):
        if step * factor >= value:
            return step * factor
    return step * 10


def time_bars(
    times: Sequence[datetime],
    series: Sequence[Series],
    *,
    label: str,
    width: int = 360,
    height: int = 140,
) -> Markup:
    """Stacked bars, one per time slot (a minute), oldest on the left; a label every 15 slots."""
    totals = [sum(s.values[i] for s in series) for i in range(len(times))]
    top = _nice_max(max(totals, default=0))
    plot_w, plot_h = width - LEFT - 4, height - BOTTOM - 6
    slot = plot_w / max(len(times), 1)
    parts = [_axes(width, height, top, plot_h)]
    for i, when in enumerate(times):
        x = LEFT + i * slot
        base = 0.0
        tip = ", ".join(f"{s.name} {_fmt(s.values[i])}" for s in series)
        parts.append(f"<g><title>{escape(f'{when:%H:%M} UTC: {tip}')}</title>")
        for s in series:
            value = s.values[i]
            h = plot_h * value / top
            y = 6 + plot_h - base - h
            if value > 0:
                parts.append(
                    f'<rect class="{escape(s.css)}" x="{x + 0.5:.1f}" y="{y:.1f}" '
                    f'width="{max(slot - 1, 1):.1f}" height="{h:.1f}"></rect>'
                )
            base += h
        parts.append(
            f'<rect class="hit" x="{x:.1f}" y="6" width="{slot:.1f}" height="{plot_h}" '
            'fill="transparent"></rect></g>'
        )
        if i % 15 == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 4}">{escape(f"{when:%H:%M}")}</text>')
    total = {s.name: sum(s.values) for s in series}
    summary = f"{label}: " + ", ".join(f"{name} {_fmt(v)} in total" for name, v in total.items())
    return _svg(width, height, summary, parts)


def hbars(
    rows: Sequence[tuple[str, Sequence[float]]],
    names: Sequence[str],
    classes: Sequence[str],
    *,
    label: str,
    unit: str = "",
    width: int = 360,
) -> Markup:
    """Horizontal bars: one group per row (a service), one bar per name (p50, p99 …)."""
    bar_h, gap, name_w = 12, 8, 110
    group_h = bar_h * len(names) + gap
    height = max(group_h * len(rows) + 4, 24)
    top = _nice_max(max((v for _, values in rows for v in values), default=0))
    plot_w = width - name_w - 60
    parts: list[str] = []
    for r, (row, values) in enumerate(rows):
        y0 = 2 + r * group_h
        shown = row if len(row) <= 16 else row[:15] + "…"
        parts.append(
            f'<text x="0" y="{y0 + bar_h * len(names) / 2 + 4:.1f}">{escape(shown)}</text>'
        )
        for b, (name, css, value) in enumerate(zip(names, classes, values, strict=True)):
            y = y0 + b * bar_h
            w = max(plot_w * value / top, 1 if value > 0 else 0)
            text = f"{row} {name}: {_fmt(value)}{unit}"
            parts.append(
                f"<g><title>{escape(text)}</title>"
                f'<rect class="{escape(css)}" x="{name_w}" y="{y:.1f}" width="{w:.1f}" '
                f'height="{bar_h - 1}"></rect>'
                f'<text x="{name_w + w + 4:.1f}" y="{y + bar_h - 1:.1f}">'
                f"{escape(_fmt(value) + unit)}</text></g>"
            )
    return _svg(width, height, label, parts)


def _axes(width: int, height: int, top: float, plot_h: int) -> str:
    y_base = 6 + plot_h
    return (
        f'<line class="grid" x1="{LEFT}" y1="6" x2="{width - 4}" y2="6"></line>'
        f'<line class="grid" x1="{LEFT}" y1="{6 + plot_h / 2:.1f}" x2="{width - 4}" '
        f'y2="{6 + plot_h / 2:.1f}"></line>'
        f'<line class="axis" x1="{LEFT}" y1="{y_base}" x2="{width - 4}" y2="{y_base}"></line>'
        f'<text x="0" y="12">{escape(_fmt(top))}</text>'
        f'<text x="0" y="{6 + plot_h / 2 + 4:.1f}">{escape(_fmt(top / 2))}</text>'
        f'<text x="0" y="{y_base}">0</text>'
    )


def _svg(width: int, height: int, label: str, parts: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMinYMin meet">'
        + "".join(parts)
        + "</svg>"
    )
