"""Column charts as inline SVG, drawn on the server: no script, nothing fetched.

`column_chart()` is a pure function from numbers to markup. Horizontal
positions are percentages of the chart's width, so the chart fills its card
at any width while its text stays at its real size (a scaled viewBox would
shrink the labels to nothing on a phone); the columns themselves are drawn in
a nested SVG stretched to the plot area. Colours come from panel.css classes:
the Content-Security-Policy allows no inline style.
Every text is escaped; every column has a <title>, which the browser shows
on hover, and the whole chart an accessible name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PLOT_TOP = 18  # room above the plot for the scale's label
TICKS_HEIGHT = 22  # room below it for the ticks


@dataclass(frozen=True)
class Column:
    value: float | None  # None: no data for this column (drawn as a gap, marked)
    title: str  # what the column is, e.g. "Tue 10:00-11:00: 4 calls"


@dataclass(frozen=True)
class Tick:
    at: float  # a position in columns (0 = the left edge, len(columns) = the right)
    text: str
    minor: bool = False  # dashboard.css hides minor ticks on a phone
    line: bool = False  # a vertical separator at this position (e.g. midnight)
    align: str = "middle"  # or "start": the text begins just right of the position


def nice_ceiling(value: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50 ... that is at least `value` (1 for 0)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return int(step * magnitude)
    return int(10 * magnitude)  # not reached


def _number(value: float) -> str:
    return f"{value:g}"


def _percent(at: float, count: int) -> str:
    return f"{100 * at / count:.3f}%"


def column_chart(columns: Sequence[Column], ticks: Sequence[Tick] = (), *, label: str,
                 height: int = 140, unit: str = "", gap: float = 0.2,
                 chart_id: str = "") -> Markup:
    """An SVG column chart: `height` px of plot, a scale from 0 to a round maximum
    (labelled with `unit`), `ticks` below. `gap` is the share of a column left empty."""
    count = max(len(columns), 1)
    values = [c.value for c in columns if c.value is not None]
    top = nice_ceiling(max(values, default=0))
    total = PLOT_TOP + height + TICKS_HEIGHT
    bottom = PLOT_TOP + height
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="100%" height="{total}"'
        + (f' id="{escape(chart_id)}"' if chart_id else "")
        + f' role="img" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
        f'<line class="grid" x1="0" x2="100%" y1="{PLOT_TOP}" y2="{PLOT_TOP}"/>',
        f'<line class="grid" x1="0" x2="100%" y1="{PLOT_TOP + height / 2:g}"'
        f' y2="{PLOT_TOP + height / 2:g}"/>',
        f'<text class="scale" x="0" y="{PLOT_TOP - 5}">{escape(_number(top))}'
        f'{" " + escape(unit) if unit else ""}</text>',
    ]
    for tick in ticks:
        if tick.line:
            x = _percent(tick.at, count)
            parts.append(f'<line class="mark" x1="{x}" x2="{x}" y1="{PLOT_TOP}" y2="{bottom}"/>')
    # The columns: one user unit wide each, the plot's pixels high, stretched to the width.
    parts.append(f'<svg class="plot" x="0" y="{PLOT_TOP}" width="100%" height="{height}"'
                 f' viewBox="0 0 {count} {height}" preserveAspectRatio="none">')
    for index, column in enumerate(columns):
        title = f"<title>{escape(column.title)}</title>"
        if column.value is None:
            parts.append(f'<rect class="nodata" x="{index}" width="1" y="{height - 3}"'
                         f' height="3">{title}</rect>')
        elif column.value > 0:
            tall = height * column.value / top
            parts.append(f'<rect class="bar" x="{index + gap / 2:g}" width="{1 - gap:g}"'
                         f' y="{height - tall:.2f}" height="{tall:.2f}">{title}</rect>')
    parts.append("</svg>")
    parts.append(f'<line class="axis" x1="0" x2="100%" y1="{bottom}" y2="{bottom}"/>')
    for tick in ticks:
        if not tick.text:
            continue
        share = tick.at / count
        if tick.align == "start":
            anchor, shift = "start", ' dx="3"'
        else:  # centred, unless that would cut it at an edge
            anchor = "start" if share < 0.04 else "end" if share > 0.96 else "middle"
            shift = ""
        parts.append(f'<text class="tick{" minor" if tick.minor else ""}"'
                     f' x="{_percent(tick.at, count)}" y="{total - 5}"{shift}'
                     f' text-anchor="{anchor}">{escape(tick.text)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
