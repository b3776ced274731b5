"""Money with a currency: the workspace's reporting currency and its effective-dated rates.

An amount keeps the currency it was sent in. The parser records on each event the rate to the
reporting currency in force at the event's time (`Payload.rate`, stored with the event), so
features, customer value and loyalty settlement all count in one currency, and a replay of the
log converts exactly as the first run did, whatever the rates file says later. A currency with
no rate in force is a reject naming `payload.currency`, never a silent default.

The rates file is CSV with a header: `currency,effective_from,rate`, where `rate` is how many
units of the reporting currency one unit of `currency` is worth from that UTC date on (until the
currency's next row).
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

DEFAULT_CURRENCY = "EUR"
_CODE = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class Rates:
    """The reporting currency and, per other currency, its rates by the day they take effect."""

    currency: str = DEFAULT_CURRENCY
    # currency -> ([first epoch day of each rate, ascending], [the rates])
    table: Mapping[str, tuple[Sequence[int], Sequence[float]]] = field(default_factory=dict)

    def rate(self, currency: str, at: dt.datetime) -> float | None:
        """Reporting units per unit of `currency` at `at`: 1 for the reporting currency, None
        when no rate is in force then."""
        if currency == self.currency:
            return 1.0
        found = self.table.get(currency)
        if found is None:
            return None
        days, rates = found
        i = bisect.bisect_right(days, int(at.timestamp()) // 86_400) - 1
        return rates[i] if i >= 0 else None

    def problem(self, currency: str, at: dt.datetime) -> str | None:
        """Why an amount in `currency` at `at` cannot be counted, or None."""
        if self.rate(currency, at) is not None:
            return None
        if currency not in self.table:
            return (
                f"payload.currency: {currency} is neither the reporting currency "
                f"({self.currency}) nor in the workspace's rates (money.rates)"
            )
        return (
            f"payload.currency: no {currency} rate to {self.currency} is in force on "
            f"{at.date().isoformat()} (money.rates)"
        )


def parse_rates(text: str, currency: str = DEFAULT_CURRENCY, source: str = "rates") -> Rates:
    """Rates from the CSV text of a rates file; ValueError naming the line when one is bad."""
    rows: dict[str, list[tuple[int, float]]] = {}
    reader = csv.DictReader(io.StringIO(text))
    if set(reader.fieldnames or ()) != {"currency", "effective_from", "rate"}:
        raise ValueError(f"{source}: the header must be currency,effective_from,rate")
    for n, row in enumerate(reader, start=2):
        code, since, value = (
            (row.get(k) or "").strip() for k in ("currency", "effective_from", "rate")
        )
        try:
            day = dt.date.fromisoformat(since)
            rate = float(value)
        except ValueError:
            raise ValueError(f"{source}: line {n}: a date (YYYY-MM-DD) and a rate") from None
        if not _CODE.match(code) or code == currency:
            raise ValueError(f"{source}: line {n}: {code!r} is not another currency's code")
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"{source}: line {n}: the rate must be a positive number")
        epoch_day = (day - dt.date(1970, 1, 1)).days
        if any(d == epoch_day for d, _ in rows.get(code, ())):
            raise ValueError(f"{source}: line {n}: {code} has two rates from {since}")
        rows.setdefault(code, []).append((epoch_day, rate))
    table = {}
    for code, pairs in rows.items():
        pairs.sort()
        table[code] = ([d for d, _ in pairs], [r for _, r in pairs])
    return Rates(currency, table)
