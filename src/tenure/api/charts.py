"""Charts for the dashboard as inline SVG, drawn on the server: no script, nothing fetched.

Each function takes plain numbers and labels and returns `Markup` (every label escaped), so a
template can place it as it is. Geometry is in SVG user units; the SVG scales to its box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 480  # a half-width card; full-width charts pass their own
LABEL_W = 150  # left column for row labels
ROW_H = 26


@dataclass(frozen=True)
class Interval:
    """One row of an interval chart: an estimate with its 95% interval (None: not measured)."""

    label: str
    estimate: float | None
    low: float | None = None
    high: float | None = None
    note: str = ""


def _svg(height: float, body: list[str], title: str, width: int = WIDTH) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height:.0f}" width="{width}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(body)}</svg>'
    )


def _pct(x: float) -> str:
    if abs(x) < 1e-12:
        return "0"
    return f"{x * 100:+.1f}".removesuffix(".0")


def _ticks(lo: float, hi: float, most: int = 7) -> list[float]:
    """Round values between lo and hi, zero among them, at most `most` of them."""
    span = hi - lo
    step = next((s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0) if span / s <= most), 1.0)
    first = math.ceil(lo / step)
    return [round(i * step, 6) for i in range(first, math.floor(hi / step) + 1)]


def intervals(
    rows: Sequence[Interval], title: str, unit: str = "points", width: int = 760, label_w: int = 260
) -> Markup:
    """Estimates as dots with 95% interval bars around a zero line (lift: churn reduction)."""
    measured = [r for r in rows if r.estimate is not None]
    ends = [0.0]
    for r in measured:
        ends += [v for v in (r.estimate, r.low, r.high) if v is not None]
    lo, hi = min(ends), max(ends)
    pad = (hi - lo) * 0.08 or 0.05
    lo, hi = lo - pad, hi + pad
    left, right = label_w, width - 20

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (right - left)

    top = 10
    height = top + ROW_H * len(rows) + 34
    body = []
    for tick in _ticks(lo, hi):
        at = x(tick)
        dash = "" if tick == 0 else ' stroke-dasharray="2 4"'
        body.append(
            f'<line class="{"zero" if tick == 0 else "tick"}" x1="{at:.1f}" y1="{top}" '
            f'x2="{at:.1f}" y2="{height - 24}" stroke="#999"{dash}/>'
            f'<text x="{at:.1f}" y="{height - 8}" font-size="11" fill="#555" '
            f'text-anchor="middle">{_pct(tick)}</text>'
        )
    body.append(
        f'<text x="{left - 8}" y="{height - 8}" font-size="11" fill="#555" text-anchor="end">'
        f"{escape(unit)}</text>"
    )
    for i, r in enumerate(rows):
        y = top + ROW_H * i + ROW_H / 2
        body.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" font-size="12" text-anchor="end">'
            f"{escape(r.label)}</text>"
        )
        if r.estimate is None:
            body.append(
                f'<text x="{left + 4}" y="{y + 4:.1f}" font-size="12" fill="#777">'
                f"{escape(r.note or 'not measured yet')}</text>"
            )
            continue
        if r.low is not None and r.high is not None:
            x1, x2 = x(r.low), x(r.high)
            body.append(
                f'<g class="ci"><title>95% interval {_pct(r.low)} to {_pct(r.high)} '
                f"{escape(unit)}</title>"
                f'<line x1="{x1:.1f}" y1="{y:.1f}" x2="{x2:.1f}" y2="{y:.1f}" stroke="#345" '
                'stroke-width="2"/>'
                f'<line x1="{x1:.1f}" y1="{y - 6:.1f}" x2="{x1:.1f}" y2="{y + 6:.1f}" '
                'stroke="#345" stroke-width="2"/>'
                f'<line x1="{x2:.1f}" y1="{y - 6:.1f}" x2="{x2:.1f}" y2="{y + 6:.1f}" '
                'stroke="#345" stroke-width="2"/></g>'
            )
        colour = "#2a7" if r.estimate > 0 else "#c44"
        body.append(
            f'<circle class="estimate" cx="{x(r.estimate):.1f}" cy="{y:.1f}" r="5" '
            f'fill="{colour}"><title>{_pct(r.estimate)} {escape(unit)}'
            f"{escape(' ' + r.note if r.note else '')}</title></circle>"
        )
    return _svg(height, body, title, width)


def bars(items: Sequence[tuple[str, float]], title: str, colour: str = "#4a78b5") -> Markup:
    """Horizontal bars, one per (label, value), scaled to the largest value."""
    if not items:
        return Markup("")
    top = max(v for _, v in items) or 1.0
    left, right = LABEL_W, WIDTH - 60
    body = []
    for i, (label, value) in enumerate(items):
        y = 6 + ROW_H * i
        w = max(0.0, value) / top * (right - left)
        body.append(
            f'<text x="{left - 8}" y="{y + 15}" font-size="12" text-anchor="end">'
            f"{escape(label)}</text>"
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{ROW_H - 8}" fill="{colour}"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + 15}" font-size="12">{value:,.0f}</text>'
        )
    return _svg(12 + ROW_H * len(items), body, title)


def burn(items: Sequence[tuple[str, float, float | None]], title: str, width: int = 760) -> Markup:
    """Budget burn: per (label, spent, amount) a bar of spent against its budget (100% mark)."""
    if not items:
        return Markup("")
    left, right = 260, width - 130
    body = []
    for i, (label, spent, amount) in enumerate(items):
        y = 6 + ROW_H * i
        share = spent / amount if amount else None
        w = (min(share, 1.2) if share is not None else 1.0) * (right - left) / 1.2
        full = (right - left) / 1.2
        colour = "#c44" if share is not None and share >= 1 else "#d89b2b"
        text = f"{spent:,.0f} of {amount:,.0f}" if amount else f"{spent:,.0f} (no budget)"
        body.append(
            f'<text x="{left - 8}" y="{y + 15}" font-size="12" text-anchor="end">'
            f"{escape(label)}</text>"
            f'<rect x="{left}" y="{y + 3}" width="{full:.1f}" height="{ROW_H - 8}" fill="#eee"/>'
            f'<rect class="spent" x="{left}" y="{y + 3}" width="{w:.1f}" height="{ROW_H - 8}" '
            f'fill="{colour}"/>'
            f'<line x1="{left + full:.1f}" y1="{y}" x2="{left + full:.1f}" y2="{y + ROW_H - 2}" '
            'stroke="#333"/>'
            f'<text x="{left + full + 6:.1f}" y="{y + 15}" font-size="12">{text}</text>'
        )
    return _svg(12 + ROW_H * len(items), body, title, width)


def columns(items: Sequence[tuple[str, int]], title: str, colour: str = "#4a78b5") -> Markup:
    """Vertical bars per (day, count), with the first and last day and the peak labelled."""
    if not items:
        return Markup("")
    height, base, left, right = 150, 125, 40, WIDTH - 10
    top = max(n for _, n in items) or 1
    step = (right - left) / len(items)
    body = [
        f'<line x1="{left}" y1="{base}" x2="{right}" y2="{base}" stroke="#888"/>',
        f'<text x="{left - 4}" y="{base - 100 + 4}" font-size="11" text-anchor="end">'
        f"{top:,}</text>",
        f'<text x="{left}" y="{height - 6}" font-size="11">{escape(items[0][0])}</text>',
        f'<text x="{right}" y="{height - 6}" font-size="11" text-anchor="end">'
        f"{escape(items[-1][0])}</text>",
    ]
    for i, (label, n) in enumerate(items):
        h = n / top * 100
        body.append(
            f'<rect x="{left + i * step + 1:.1f}" y="{base - h:.1f}" width="{max(step - 2, 1):.1f}"'
            f' height="{h:.1f}" fill="{colour}"><title>{escape(label)}: {n:,}</title></rect>'
        )
    return _svg(height, body, title)
