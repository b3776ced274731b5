"""Charts for the dashboard as inline SVG, drawn on the server: no script, nothing fetched.

Each function takes plain numbers and labels and returns `Markup` (every label escaped), so a
template can place it as it is. Geometry is in SVG user units; the SVG scales to its box.

Labels are never clipped: the label column is as wide as the longest label needs (measured with
a generous average glyph width, as nothing here can measure text), within bounds; a label longer
than the widest column is shortened with an ellipsis and keeps its whole text as a tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 480  # a half-width card; full-width charts pass their own
LABEL_W = 150  # left column for row labels
ROW_H = 26
GLYPH = 0.62  # average glyph width of system-ui digits and lower case, in font sizes (generous)


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


def text_width(text: str, size: float = 12) -> float:
    """About how wide `text` is drawn at font size `size` (a little wider than it is)."""
    return len(text) * size * GLYPH


def label_column(labels: Sequence[str], least: float, most: float, size: float = 12) -> float:
    """How wide a column of right-aligned row labels must be (with its gap), within bounds."""
    needed = max((text_width(x, size) for x in labels), default=0.0) + 14
    return min(max(needed, least), most)


def _label(text: str, x: float, y: float, room: float, size: float = 12) -> str:
    """A right-aligned row label ending at x, shortened to fit `room` (whole in its tooltip)."""
    shown = text
    while len(shown) > 1 and text_width(shown, size) > room:
        shown = shown[:-1]
    title = ""
    if shown != text:
        shown = shown[:-1] + "…"
        title = f"<title>{escape(text)}</title>"
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size:g}" text-anchor="end">'
        f"{title}{escape(shown)}</text>"
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
    rows: Sequence[Interval], title: str, unit: str = "points", width: int = 760
) -> Markup:
    """Estimates as dots with 95% interval bars around a zero line (lift: churn reduction)."""
    label_w = label_column([r.label for r in rows] + [unit], 160, width * 0.55)
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
        body.append(_label(r.label, left - 8, y + 4, left - 12))
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
    figure = max(text_width(f"{v:,.0f}") for _, v in items) + 12
    left = label_column([label for label, _ in items], LABEL_W, WIDTH * 0.45)
    right = WIDTH - max(figure, 40)
    body = []
    for i, (label, value) in enumerate(items):
        y = 6 + ROW_H * i
        w = max(0.0, value) / top * (right - left)
        body.append(
            _label(label, left - 8, y + 15, left - 12)
            + f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{ROW_H - 8}" fill="{colour}"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + 15}" font-size="12">{value:,.0f}</text>'
        )
    return _svg(12 + ROW_H * len(items), body, title)


def burn(items: Sequence[tuple[str, float, float | None]], title: str, width: int = 760) -> Markup:
    """Budget burn: per (label, spent, amount) a bar of spent against its budget (100% mark)."""
    if not items:
        return Markup("")
    texts = [
        f"{spent:,.0f} of {amount:,.0f}" if amount else f"{spent:,.0f} (no budget)"
        for _, spent, amount in items
    ]
    left = label_column([label for label, _, _ in items], 160, width * 0.45)
    # The figures sit right of the 100% mark; bars past it (overspent) run under them.
    right = width - max(text_width(x) for x in texts) - 12
    body = []
    for i, ((label, spent, amount), text) in enumerate(zip(items, texts, strict=True)):
        y = 6 + ROW_H * i
        share = spent / amount if amount else None
        w = (min(share, 1.2) if share is not None else 1.0) * (right - left) / 1.2
        full = (right - left) / 1.2
        colour = "#c44" if share is not None and share >= 1 else "#d89b2b"
        body.append(
            _label(label, left - 8, y + 15, left - 12)
            + f'<rect x="{left}" y="{y + 3}" width="{full:.1f}" height="{ROW_H - 8}" fill="#eee"/>'
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
    top = max(n for _, n in items) or 1
    height, base, right = 150, 125, WIDTH - 10
    left = max(40.0, text_width(f"{top:,}", 11) + 8)
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


def reliability(
    bins: Sequence[tuple[str, float, float, int]], title: str, width: int = 360
) -> Markup:
    """Observed against predicted probability per (bin, predicted, observed, count): a dot per
    bin (its area by count) around the diagonal a perfectly calibrated model sits on."""
    if not bins:
        return Markup("")
    size, left, bottom, pad = width - 60, 44, 34, 12
    height = size + pad + bottom
    most = max(n for *_, n in bins) or 1

    def at(p: float, q: float) -> tuple[float, float]:
        return left + p * size, pad + (1 - q) * size

    x0, y0 = at(0, 0)
    x1, y1 = at(1, 1)
    body = [
        f'<rect x="{x0}" y="{y1}" width="{size}" height="{size}" fill="none" stroke="#bbb"/>',
        f'<line class="diagonal" x1="{x0}" y1="{y0}" x2="{x1:.1f}" y2="{y1:.1f}" '
        'stroke="#999" stroke-dasharray="4 4"/>',
    ]
    for tick in (0.0, 0.5, 1.0):
        tx, ty = at(tick, tick)
        body.append(
            f'<text x="{tx:.1f}" y="{y0 + 16:.1f}" font-size="11" text-anchor="middle">'
            f"{tick:.0%}</text>"
            f'<text x="{x0 - 6:.1f}" y="{ty + 4:.1f}" font-size="11" text-anchor="end">'
            f"{tick:.0%}</text>"
        )
    body.append(
        f'<text x="{x0 + size / 2:.1f}" y="{height - 4}" font-size="11" text-anchor="middle">'
        "predicted churn</text>"
        f'<text x="12" y="{pad + size / 2:.1f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {pad + size / 2:.1f})">observed churn</text>'
    )
    for label, predicted, observed, n in bins:
        cx, cy = at(min(max(predicted, 0.0), 1.0), min(max(observed, 0.0), 1.0))
        r = 3 + 7 * math.sqrt(n / most)
        body.append(
            f'<circle class="bin" cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="#4a78b5" '
            f'fill-opacity=".7"><title>{escape(label)}: predicted {predicted:.1%}, observed '
            f"{observed:.1%} of {n:,}</title></circle>"
        )
    return _svg(height, body, title, width)
