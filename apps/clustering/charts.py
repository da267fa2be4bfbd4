"""The run report's charts as inline SVG, drawn by the server: pure functions,
data in and markup out, every text escaped. Nothing is fetched at page load.

Each chart is an ``<svg role="img">`` with a ``<title>`` and an ``aria-label``
saying what it shows, labelled axes, and one element per datum with a class to
find it by (``k-point`` on a line, ``point`` in the scatter) and a ``<title>``
of its own for a tooltip.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape as _html_escape
from django.utils.safestring import SafeString, mark_safe

# Okabe-Ito's colour-blind-safe palette, then a few more distinct ones.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#D55E00",
    "#56B4E9",
    "#8C6D1F",
    "#000000",
    "#7F3C8D",
    "#11A579",
    "#E73F74",
    "#3969AC",
)
NOISE_COLOUR = "#9E9E9E"

WIDTH, HEIGHT = 500, 300
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 72, 20, 34, 52


# Characters XML 1.0 does not allow (a persona name is a marketer's free text).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def escape(text: object) -> str:
    """Text for SVG: escaped, and without the characters XML cannot hold."""
    return str(_html_escape(_NOT_XML.sub("", str(text))))


def colour(index: int) -> str:
    """A cluster's colour (noise, -1, is grey), the same in the scatter and the table."""
    return NOISE_COLOUR if index < 0 else PALETTE[index % len(PALETTE)]


def _num(value: float) -> str:
    return f"{value:.1f}"


def _label(value: float) -> str:
    """A tick label: short, without spurious digits."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10_000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


@dataclass(frozen=True)
class _Scale:
    lo: float
    hi: float
    start: float  # pixel of lo
    end: float  # pixel of hi

    def __call__(self, value: float) -> float:
        if self.hi == self.lo:
            return (self.start + self.end) / 2
        return self.start + (value - self.lo) / (self.hi - self.lo) * (self.end - self.start)


def _padded(values: Sequence[float], share: float = 0.08) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    span = hi - lo
    pad = span * share if span > 0 else (abs(lo) * share or 1.0)
    return lo - pad, hi + pad


def _frame(title: str, description: str, x_label: str, y_label: str, body: list[str]) -> SafeString:
    left, bottom = MARGIN_LEFT, HEIGHT - MARGIN_BOTTOM
    right = WIDTH - MARGIN_RIGHT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(description)}" '
        'class="clustering-chart" style="max-width:100%;height:auto;font-family:sans-serif">',
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(description)}</desc>",
        f'<text x="{left}" y="20" font-size="14" font-weight="bold" fill="#333">'
        f"{escape(title)}</text>",
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#666"/>',
        f'<line x1="{left}" y1="{MARGIN_TOP}" x2="{left}" y2="{bottom}" stroke="#666"/>',
        f'<text class="axis-label" x="{(left + right) / 2:.1f}" y="{HEIGHT - 10}" '
        f'font-size="12" text-anchor="middle" fill="#333">{escape(x_label)}</text>',
        f'<text class="axis-label" x="16" y="{(MARGIN_TOP + bottom) / 2:.1f}" font-size="12" '
        f'text-anchor="middle" fill="#333" transform="rotate(-90 16 '
        f'{(MARGIN_TOP + bottom) / 2:.1f})">{escape(y_label)}</text>',
        *body,
        "</svg>",
    ]
    return mark_safe("".join(parts))


def _y_ticks(scale: _Scale) -> list[str]:
    out = []
    for tick in _ticks(scale.lo, scale.hi):
        y = scale(tick)
        out.append(
            f'<line x1="{MARGIN_LEFT - 4}" y1="{_num(y)}" x2="{WIDTH - MARGIN_RIGHT}" '
            f'y2="{_num(y)}" stroke="#e5e5e5"/>'
            f'<text x="{MARGIN_LEFT - 8}" y="{_num(y + 4)}" font-size="11" text-anchor="end" '
            f'fill="#555">{escape(_label(tick))}</text>'
        )
    return out


def _x_ticks(scale: _Scale, values: Sequence[float] | None = None) -> list[str]:
    out = []
    bottom = HEIGHT - MARGIN_BOTTOM
    for tick in values if values is not None else _ticks(scale.lo, scale.hi):
        x = scale(tick)
        out.append(
            f'<line x1="{_num(x)}" y1="{bottom}" x2="{_num(x)}" y2="{bottom + 4}" stroke="#666"/>'
            f'<text x="{_num(x)}" y="{bottom + 17}" font-size="11" text-anchor="middle" '
            f'fill="#555">{escape(_label(tick))}</text>'
        )
    return out


def metric_line_chart(
    *,
    title: str,
    metric_label: str,
    points: Sequence[tuple[int, float | None]],
    chosen_k: int | None = None,
    knee_k: int | None = None,
) -> SafeString:
    """A metric per candidate k: a line through one ``k-point`` circle per k with
    a value (a k without one is left out of the line), the chosen k drawn larger
    and labelled, the knee of an elbow marked with a dashed line."""
    scored = [(k, float(v)) for k, v in points if v is not None and math.isfinite(float(v))]
    ks = [k for k, _ in points]
    summary = ", ".join(f"k={k}: {_label(v)}" for k, v in scored) or "no k was scored"
    description = f"{metric_label} for each candidate k ({summary})"
    if chosen_k is not None:
        description += f"; k={chosen_k} was chosen"
    if knee_k is not None:
        description += f"; the knee of the curve is at k={knee_k}"
    if not scored:
        body = [
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" font-size="13" '
            'fill="#555">No candidate k could be scored.</text>'
        ]
        return _frame(title, description, "number of clusters k", metric_label, body)
    x = _Scale(
        min(ks) - 0.5 if len(ks) > 1 else ks[0] - 1,
        max(ks) + 0.5 if len(ks) > 1 else ks[0] + 1,
        MARGIN_LEFT,
        WIDTH - MARGIN_RIGHT,
    )
    y = _Scale(*_padded([v for _, v in scored]), HEIGHT - MARGIN_BOTTOM, MARGIN_TOP)
    body = [*_y_ticks(y), *_x_ticks(x, ks)]
    if knee_k is not None:
        body.append(
            f'<line class="knee" x1="{_num(x(knee_k))}" y1="{MARGIN_TOP}" '
            f'x2="{_num(x(knee_k))}" y2="{HEIGHT - MARGIN_BOTTOM}" stroke="#D55E00" '
            f'stroke-dasharray="5 4"><title>knee at k={knee_k}</title></line>'
            f'<text x="{_num(x(knee_k) + 4)}" y="{MARGIN_TOP + 12}" font-size="11" '
            f'fill="#D55E00">knee k={knee_k}</text>'
        )
    path = " ".join(f"{_num(x(k))},{_num(y(v))}" for k, v in scored)
    body.append(f'<polyline points="{path}" fill="none" stroke="#0072B2" stroke-width="2"/>')
    for k, v in scored:
        chosen = k == chosen_k
        radius, fill = (7, "#E69F00") if chosen else (4, "#0072B2")
        body.append(
            f'<circle class="k-point{" chosen" if chosen else ""}" data-k="{k}" '
            f'cx="{_num(x(k))}" cy="{_num(y(v))}" r="{radius}" fill="{fill}" '
            f'stroke="#fff" stroke-width="1.5"><title>k={k}: {escape(metric_label)} '
            f"{escape(_label(v))}{' (chosen)' if chosen else ''}</title></circle>"
        )
        if chosen:
            body.append(
                f'<text x="{_num(x(k))}" y="{_num(y(v) - 12)}" font-size="11" '
                f'text-anchor="middle" font-weight="bold" fill="#333">chosen k={k}</text>'
            )
    return _frame(title, description, "number of clusters k", metric_label, body)


def scatter_chart(
    *,
    title: str,
    axes: Sequence[str],
    points: Sequence[Sequence[float]],
    legend: Sequence[tuple[int, str]],
    centroids: Sequence[Sequence[float]] = (),
) -> SafeString:
    """A 2-D scatter: one ``point`` circle per ``[x, y, cluster]`` coloured by its
    cluster, centroids as crosses (paths, not circles), and a legend of swatches
    naming each cluster (``legend``: (cluster index, name))."""
    names = dict(legend)
    counts: dict[int, int] = {}
    for p in points:
        counts[int(p[2])] = counts.get(int(p[2]), 0) + 1
    x_label, y_label = [*axes, "x", "y"][:2]
    description = (
        f"{len(points)} sampled profiles on {x_label} and {y_label}, coloured by cluster: "
        + ", ".join(
            f"{names.get(i, 'noise' if i < 0 else f'cluster {i}')} ({n})"
            for i, n in sorted(counts.items())
        )
    )
    legend_width = 190
    plot_right = WIDTH - MARGIN_RIGHT
    xs = [float(p[0]) for p in points] + [float(c[0]) for c in centroids]
    ys = [float(p[1]) for p in points] + [float(c[1]) for c in centroids]
    if not xs:
        body = [
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" font-size="13" '
            'fill="#555">No sample to show.</text>'
        ]
        return _frame(title, description, x_label, y_label, body)
    x = _Scale(*_padded(xs), MARGIN_LEFT, plot_right - legend_width)
    y = _Scale(*_padded(ys), HEIGHT - MARGIN_BOTTOM, MARGIN_TOP)
    body = [*_y_ticks(y), *_x_ticks(x)]
    for p in points:
        index = int(p[2])
        body.append(
            f'<circle class="point" data-cluster="{index}" cx="{_num(x(float(p[0])))}" '
            f'cy="{_num(y(float(p[1])))}" r="2.6" fill="{colour(index)}" fill-opacity="0.7"/>'
        )
    for i, c in enumerate(centroids):
        cx, cy = x(float(c[0])), y(float(c[1]))
        name = names.get(i, f"cluster {i}")
        body.append(
            f'<path class="centroid" data-cluster="{i}" d="M{_num(cx - 6)},{_num(cy)} '
            f'H{_num(cx + 6)} M{_num(cx)},{_num(cy - 6)} V{_num(cy + 6)}" '
            f'stroke="#000" stroke-width="3"><title>centre of {escape(name)}</title></path>'
            f'<path d="M{_num(cx - 5)},{_num(cy)} H{_num(cx + 5)} M{_num(cx)},{_num(cy - 5)} '
            f'V{_num(cy + 5)}" stroke="{colour(i)}" stroke-width="1.5"/>'
        )
    top = MARGIN_TOP + 4
    left = plot_right - legend_width + 16
    entries = sorted(names.items())
    if -1 in counts and -1 not in names:
        entries.append((-1, "noise"))
    for row, (index, name) in enumerate(entries):
        ty = top + row * 18
        shown = name if len(name) <= 26 else name[:25] + "…"
        body.append(
            f'<g class="legend-entry" data-cluster="{index}">'
            f'<rect x="{left}" y="{ty}" width="11" height="11" fill="{colour(index)}"/>'
            f'<text x="{left + 16}" y="{ty + 10}" font-size="11" fill="#333">'
            f"<title>{escape(name)}</title>{escape(shown)}</text></g>"
        )
    return _frame(title, description, x_label, y_label, body)


__all__ = ["colour", "metric_line_chart", "scatter_chart"]
