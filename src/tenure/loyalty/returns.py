"""Returns: how many of a purchase's points a return takes back, and from which funder.

A return brings back the whole purchase, or part of it: an `amount` (in the purchase's own
currency) or a number of `items`. The part is a share of the purchase (amount / purchase amount,
or items / purchase items), and the points asked back follow the share *cumulatively*: after
returns of shares s1, s2, ... the purchase has given back floor(granted x min(1, s1 + s2 + ...))
points in all. So partial returns add up to at most the whole, three thirds give back exactly
what was granted (no point lost or gained to rounding), and a return after the whole has come back
asks nothing. The contract's return policy then decides how many of those are clawed back (as far
as the balance allows, all, or only what is still unspent in the purchase's own lots).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

WHOLE = 1.0
_EPS = 1e-9


@dataclass(frozen=True)
class Share:
    """The part of a purchase one return brings back, and how it was measured."""

    share: float  # 0..1 of the purchase
    measure: str  # e.g. "the whole purchase", "amount 25 of 100", "items 1 of 4"


def returned_share(purchase: Mapping[str, Any], amount: float | None, items: int | None) -> Share:
    """The share of `purchase` (its payload as sent) that a return of `amount` or `items` is."""
    if amount is None and items is None:
        return Share(WHOLE, "the whole purchase")
    if amount is not None:
        total = float(purchase.get("amount") or 0.0)
        label = f"amount {amount:g} of {total:g}"
        share = amount / total if total > 0 else WHOLE
    else:
        total = float(purchase.get("items") or 1)
        label = f"items {items} of {total:g}"
        share = float(items or 0) / total
    return Share(min(WHOLE, max(0.0, share)), label)


def asked_back(granted: int, before: float, share: float) -> tuple[float, int]:
    """(the purchase's returned share after this return, the points this return asks back)."""
    after = min(WHOLE, before + share)
    if after > WHOLE - _EPS:
        after = WHOLE
    asked = math.floor(granted * after + _EPS) - math.floor(granted * before + _EPS)
    return after, max(0, asked)


def allocate(
    shares: Mapping[str, int], clawed: Mapping[str, int], points: int, first: str
) -> dict[str, int]:
    """Split `points` over the funders in proportion to what each still has to give back (its
    share less what returns took already), never more than that; the rounding remainder goes to
    `first` (the OEM or brand), then to the others in order."""
    remaining = {f: int(n) - int(clawed.get(f, 0)) for f, n in sorted(shares.items())}
    remaining = {f: n for f, n in remaining.items() if n > 0}
    total = sum(remaining.values())
    points = min(points, total)
    if points <= 0:
        return {}
    out = {f: math.floor(n * points / total) for f, n in remaining.items()}
    left = points - sum(out.values())
    for f in [first, *remaining] if first in remaining else list(remaining):
        take = min(left, remaining[f] - out[f])
        out[f] += take
        left -= take
    return {f: n for f, n in out.items() if n > 0}
