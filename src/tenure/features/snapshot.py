"""Feature snapshots: what a customer's state says as of a point in (event) time.

A snapshot is what scoring and policy see and what the audit stores as lineage; it is computed from
the state and an `as_of` time only, so the same state and time always give the same snapshot.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import msgspec

from tenure.features.state import DAY_S, KEEP_DAYS, MICROS, CustomerState, Fold

WINDOWS_DAYS = (7, 30, 90)
FAMILIES = (
    "usage",
    "purchase",
    "subscription",
    "payment",
    "support",
    "channel",
    "consent",
    "profile",
)


@functools.lru_cache(maxsize=65_536)
def _iso(ts: int) -> str:
    # Cached: a customer's first-seen time is formatted again in every batch that touches it.
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def _utc(ts: int | None) -> str | None:
    return None if ts is None else _iso(ts)


class Features(msgspec.Struct, frozen=True, kw_only=True):
    """A customer's features as of one time. Durations in days, money in the workspace's
    reporting currency (events/money.py).

    A msgspec struct rather than a frozen dataclass: one is built for every customer in every
    batch, and a frozen dataclass's per-field `object.__setattr__` was a tenth of that cost.
    """

    customer_id: str
    as_of: str  # ISO-8601 UTC
    first_seen: str | None
    last_seen: str | None
    tenure_days: float
    days_since_last_seen: float
    days_since_last_activity: float | None  # last usage or purchase
    # BG/NBD summary (Fader, Hardie & Lee 2005): repeat purchase days, and in days since first.
    frequency: int
    recency_days: float
    age_days: float
    purchases_total: int
    spend_total: float
    mean_order_value: float | None
    usage_7d: int
    usage_prev_21d: int
    usage_trend: float | None  # daily usage rate of the last 7 days over that of the 21 before
    usage_minutes_30d: float
    payment_failures_30d: int
    tickets_30d: int
    open_tickets: int
    mean_sentiment_30d: float | None
    subscription_status: str | None
    plan: str | None
    mrr: float | None
    segment: str | None
    timezone: str | None
    consent: Mapping[str, bool] = msgspec.field(default_factory=dict)
    windows: Mapping[str, float] = msgspec.field(
        default_factory=dict
    )  # "{family}_{count|amount}_{N}d"

    def consented(self, channel: str, purpose: str, partner_id: str | None = None) -> bool:
        """Whether consent for (channel, purpose[, partner]) stands granted; absent means no."""
        key = f"{channel}:{purpose}" + (f":{partner_id}" if partner_id else "")
        return bool(self.consent.get(key, False))

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready form (for audit lineage and display)."""
        rec = {name: getattr(self, name) for name in self.__struct_fields__}
        rec["consent"] = dict(sorted(self.consent.items()))
        rec["windows"] = dict(sorted(self.windows.items()))
        return rec

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Features:
        """Rebuild a snapshot from `to_record()` output (replay from the audit)."""
        data = dict(rec)
        data["consent"] = MappingProxyType(dict(data["consent"]))
        data["windows"] = MappingProxyType(dict(data["windows"]))
        return cls(**data)


# Window feature names, built once: snapshots are taken for every customer in every batch.
_WINDOW_KEYS = {
    family: tuple((f"{family}_count_{d}d", f"{family}_amount_{d}d") for d in WINDOWS_DAYS)
    for family in FAMILIES
}
_NO_DAYS = (0, 0, 0, 0, 0, 0, 0, -1)
_ZERO_WINDOWS: dict[str, float] = {
    key: (0 if "_count_" in key else 0.0)
    for keys in _WINDOW_KEYS.values()
    for pair in keys
    for key in pair
}


def _windows(bucket: Mapping[int, tuple[int, int]], today: int) -> tuple[int, ...]:
    """One pass over the day buckets of a family.

    Returns (count, amount) over the last 7, 30 and 90 days, the count over the 21 days before the
    last 7 (for the usage trend), and the newest day with any event (-1 when none).
    """
    c7 = a7 = c30 = a30 = c90 = a90 = prev21 = 0
    newest = -1
    for day, (c, a) in bucket.items():
        newest = day if day > newest else newest
        age = today - day
        if age < 0 or age >= 90:
            continue
        c90 += c
        a90 += a
        if age < 30:
            c30 += c
            a30 += a
            if age < 7:
                c7 += c
                a7 += a
            elif age < 28:
                prev21 += c
        elif age < 28:
            prev21 += c
    return c7, a7, c30, a30, c90, a90, prev21, newest


def _all_windows(
    state: CustomerState, today: int
) -> tuple[dict[str, float], dict[str, tuple[int, ...]]]:
    """Counts and amounts over 7, 30 and 90 days per family, and each family's raw window
    statistics (what the trend and recency features read)."""
    windows = dict(_ZERO_WINDOWS)
    stats: dict[str, tuple[int, ...]] = {}
    for family, bucket in state.daily.items():
        keys = _WINDOW_KEYS.get(family)
        if keys is None or not bucket:
            continue
        stats[family] = w = _windows(bucket, today)
        (ck7, ak7), (ck30, ak30), (ck90, ak90) = keys
        windows[ck7], windows[ak7] = w[0], w[1] / MICROS
        windows[ck30], windows[ak30] = w[2], w[3] / MICROS
        windows[ck90], windows[ak90] = w[4], w[5] / MICROS
    return windows, stats


def _rfm(days: frozenset[int], today: int) -> tuple[int, float, float]:
    """BG/NBD's inputs in days: repeat purchases, first-to-last span, age since the first."""
    if not days:
        return 0, 0.0, 0.0
    first_day = min(days)
    return len(days) - 1, float(max(days) - first_day), float(today - first_day)


def _tickets_and_consent(regs: Mapping[str, Any]) -> tuple[int, dict[str, bool]]:
    """Open tickets and consent from the registers, in one pass (snapshots are taken at every
    instant); consent keys in order."""
    open_tickets = 0
    consent = []
    for k, r in regs.items():
        if k.startswith("ticket:"):
            open_tickets += r[2] == "open"
        elif k.startswith("consent:"):
            consent.append((k[8:], bool(r[2])))
    consent.sort()
    return open_tickets, dict(consent)


class Brief(msgspec.Struct, frozen=True):
    """The few features every instant is scored and settled on, where a scorer can score from
    them (the baseline's inputs and the subscription status). Each is computed exactly as in
    `Features`, by the same helpers; the full snapshot is built only where a decision is
    considered, a few thousandths of all instants (features/instants.py)."""

    days_since_last_activity: float | None
    tenure_days: float
    usage_trend: float | None
    payment_failures_30d: int
    open_tickets: int
    mean_sentiment_30d: float | None
    subscription_status: str | None


def _trend(usage_7d: int, usage_prev_21d: int) -> float | None:
    """The daily usage rate of the last 7 days over that of the 21 before."""
    return round((usage_7d / 7) / (usage_prev_21d / 21), 6) if usage_prev_21d else None


def _sentiment(tickets_30d: int, sentiment_micros_30d: int) -> float | None:
    """Mean ticket sentiment over 30 days from the support family's count and sum."""
    return round(sentiment_micros_30d / MICROS / tickets_30d, 6) if tickets_30d else None


def _since_activity(usage: tuple[int, ...], purchase_newest: int, today: int) -> float | None:
    newest_activity = max(usage[7], purchase_newest)
    return float(today - newest_activity) if newest_activity >= 0 else None


def _tenure(first: int | None, now: int) -> float:
    return round((now - first) / DAY_S, 4) if first is not None else 0.0


def _register(regs: Mapping[str, Any], name: str) -> Any:
    r = regs.get(name)
    return None if r is None else r[2]


def _span(bucket: Mapping[int, tuple[int, int]], lo: int, hi: int) -> tuple[int, int]:
    """Count and amount of the days `lo`..`hi` of a family's buckets, by whichever is fewer:
    looking those days up, or reading every bucket."""
    count = amount = 0
    if len(bucket) > hi - lo + 1:
        get = bucket.get
        for day in range(lo, hi + 1):
            b = get(day)
            if b is not None:
                count += b[0]
                amount += b[1]
    else:
        for day, (c, a) in bucket.items():
            if lo <= day <= hi:
                count += c
                amount += a
    return count, amount


def _usage_split(bucket: Mapping[int, tuple[int, int]], today: int) -> tuple[int, int]:
    """Usage counts over the last 7 days and the 21 before them, in one pass (`_span`'s
    choice: the 28 days looked up, or every bucket read)."""
    c7 = prev21 = 0
    if len(bucket) > 28:
        get = bucket.get
        for age in range(28):
            b = get(today - age)
            if b is not None:
                if age < 7:
                    c7 += b[0]
                else:
                    prev21 += b[0]
    else:
        for day, (c, _) in bucket.items():
            age = today - day
            if 0 <= age < 7:
                c7 += c
            elif 7 <= age < 28:
                prev21 += c
    return c7, prev21


def brief(source: CustomerState | Fold, now: int) -> Brief:
    """The `Brief` at epoch second `now` of a state, or of a fold as it goes: three families'
    windows and two registers instead of every feature. A fold may still hold days and tickets
    from before the kept window (it cuts them when its state is read), so those are read
    through the window here, as the state would have them."""
    today = now // DAY_S
    if isinstance(source, Fold):
        first, last = source.first, source.last
        newest = max(source.newest_day("usage"), source.newest_day("purchase"))
    else:
        first, last = source.first_seen, source.last_seen
        newest = max(max(b) if (b := source.daily.get(f)) else -1 for f in ("usage", "purchase"))
    if last is None:
        return Brief(None, 0.0, None, 0, 0, None, _register(source.registers, "subscription"))
    horizon = last // DAY_S - KEEP_DAYS + 1
    daily = source.daily
    usage = daily.get("usage")
    u7, prev21 = _usage_split(usage, today) if usage else (0, 0)
    payment = daily.get("payment")
    support = daily.get("support")
    s30 = _span(support, today - 29, today) if support else (0, 0)
    horizon_s = horizon * DAY_S
    return Brief(
        days_since_last_activity=float(today - newest) if newest >= max(horizon, 0) else None,
        tenure_days=_tenure(first, now),
        usage_trend=_trend(u7, prev21),
        payment_failures_30d=_span(payment, today - 29, today)[0] if payment else 0,
        open_tickets=sum(
            1
            for k, r in source.registers.items()
            if r[2] == "open" and r[0] >= horizon_s and k.startswith("ticket:")
        ),
        mean_sentiment_30d=_sentiment(*s30),
        subscription_status=_register(source.registers, "subscription"),
    )


def snapshot(state: CustomerState, as_of: dt.datetime) -> Features:
    """Compute the features of `state` as of `as_of` (timezone-aware)."""
    now = int(as_of.timestamp())
    today = now // DAY_S
    windows, stats = _all_windows(state, today)
    usage = stats.get("usage", _NO_DAYS)
    support = stats.get("support", _NO_DAYS)
    regs = state.registers
    open_tickets, consent = _tickets_and_consent(regs)

    frequency, recency, age = _rfm(state.purchase_days, today)
    n_purchases, spend_micros = state.totals.get("purchase", (0, 0))
    spend = spend_micros / MICROS
    first, last = state.first_seen, state.last_seen
    mrr = _register(regs, "mrr")
    return Features(
        customer_id=state.customer_id,
        as_of=_utc(now) or "",
        first_seen=_utc(first),
        last_seen=_utc(last),
        tenure_days=_tenure(first, now),
        days_since_last_seen=round((now - last) / DAY_S, 4) if last is not None else 0.0,
        days_since_last_activity=_since_activity(usage, stats.get("purchase", _NO_DAYS)[7], today),
        frequency=frequency,
        recency_days=recency,
        age_days=age,
        purchases_total=n_purchases,
        spend_total=round(spend, 6),
        mean_order_value=round(spend / n_purchases, 6) if n_purchases else None,
        usage_7d=usage[0],
        usage_prev_21d=usage[6],
        usage_trend=_trend(usage[0], usage[6]),
        usage_minutes_30d=windows["usage_amount_30d"],
        payment_failures_30d=int(windows["payment_count_30d"]),
        tickets_30d=support[2],
        open_tickets=open_tickets,
        mean_sentiment_30d=_sentiment(support[2], support[3]),
        subscription_status=_register(regs, "subscription"),
        plan=_register(regs, "plan"),
        mrr=float(mrr) if mrr is not None else None,
        segment=_register(regs, "segment"),
        timezone=_register(regs, "timezone"),
        consent=MappingProxyType(consent),
        windows=MappingProxyType(windows),
    )
