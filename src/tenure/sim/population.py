"""Deterministic synthetic customer histories for a subscription business with loyalty purchases.

Every random draw comes from a per-customer ``numpy.random.Generator`` seeded with
``(spec.seed, customer index)``, so a customer's history never depends on how many other
customers are generated, and the same spec always produces the same bytes.
"""

from __future__ import annotations

import datetime
import itertools
import pathlib
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import orjson

__all__ = ["PopulationSpec", "generate", "truth", "write_jsonl"]


@dataclass(frozen=True)
class PopulationSpec:
    """Size, length, seed and first local calendar day of a synthetic population."""

    customers: int = 2000
    days: int = 90
    seed: int = 7
    start: datetime.date = datetime.date(2026, 1, 1)


# Every zone here switches DST in the small hours, so a day's noon offset is valid for the
# whole 07:00-23:00 window used for event times.
TIMEZONES: tuple[str, ...] = (
    "Europe/Berlin",
    "Europe/London",
    "Europe/Paris",
    "Europe/Madrid",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Australia/Sydney",
)
_TZ_WEIGHTS = np.array([18, 8, 8, 6, 14, 7, 7, 5, 9, 6, 5, 7], dtype=float)

PLANS: dict[str, float] = {"basic": 19.0, "pro": 49.0, "team": 199.0}
_PLAN_NAMES: tuple[str, ...] = tuple(PLANS)
_PLAN_SHARES = np.array([0.55, 0.35, 0.10])
_UPGRADE = {"basic": "pro", "pro": "team", "team": "team"}
_DOWNGRADE = {"basic": "basic", "pro": "basic", "team": "pro"}

SEGMENTS: tuple[str, ...] = ("smb", "consumer", "enterprise")
_SEGMENT_SHARES: dict[str, np.ndarray] = {
    "basic": np.array([0.40, 0.60, 0.00]),
    "pro": np.array([0.60, 0.30, 0.10]),
    "team": np.array([0.20, 0.00, 0.80]),
}

FEATURES: tuple[str, ...] = ("dashboard", "reports", "export", "alerts", "integrations", "mobile")
# Bigger plans lean on the heavier features, which gives feature mix some plan signal.
_FEATURE_WEIGHTS: dict[str, np.ndarray] = {
    "basic": np.array([0.40, 0.15, 0.05, 0.10, 0.02, 0.28]),
    "pro": np.array([0.28, 0.24, 0.12, 0.14, 0.08, 0.14]),
    "team": np.array([0.20, 0.25, 0.15, 0.12, 0.20, 0.08]),
}

DEALERS: tuple[str, ...] = tuple(f"dealer-{k}" for k in range(1, 13))

SOURCES: dict[str, str] = {
    "usage": "app",
    "purchase": "pos",
    "subscription.started": "billing",
    "subscription.renewed": "billing",
    "subscription.cancel_requested": "billing",
    "subscription.cancelled": "billing",
    "payment.failed": "billing",
    "support.ticket": "support",
    "consent.granted": "crm",
    "consent.revoked": "crm",
    "profile.updated": "crm",
    "channel.opened": "crm",
    "channel.clicked": "crm",
}

_CANCEL_REASONS = ("too_expensive", "not_using", "missing_features", "switched_competitor")
_PAYMENT_REASONS = ("card_declined", "insufficient_funds", "card_expired")
_HAPPY_TOPICS = ("how_to", "feature_request", "account", "billing", "integration")
_UNHAPPY_TOPICS = ("bug", "performance", "billing", "cancellation", "data_loss")
_CAMPAIGNS = ("winter-tips", "feature-digest", "loyalty-points", "spring-offer", "webinar")
_CAMPAIGN_EVERY = 14

_DAY_START = 7 * 3600
_DAY_END = 23 * 3600 - 1
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_SORT_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE

# (utc epoch seconds, customer_id, type, per-customer seq, source, partner_id, payload)
_Row = tuple[int, str, str, int, str, str | None, dict[str, object]]


class _Clock:
    """Maps a local (day index, second of day) in one zone to UTC epoch seconds."""

    def __init__(self, start: datetime.date, days: int, tz: zoneinfo.ZoneInfo) -> None:
        self._base: list[int] = []
        for d in range(days):
            date = start + datetime.timedelta(days=d)
            noon = datetime.datetime(date.year, date.month, date.day, 12, tzinfo=tz)
            offset = noon.utcoffset() or datetime.timedelta(0)
            midnight = (date.toordinal() - _EPOCH_ORDINAL) * 86400
            self._base.append(midnight - int(offset.total_seconds()))

    def at(self, day: int, second: int) -> int:
        """UTC epoch seconds of a local second-of-day on a window day."""
        return self._base[day] + second


def _customer_id(index: int) -> str:
    return f"c-{index:05d}"


def _rng(seed: int, index: int) -> np.random.Generator:
    # SeedSequence rejects negative entropy; a zigzag fold keeps every int seed distinct.
    entropy = 2 * seed if seed >= 0 else -2 * seed - 1
    return np.random.default_rng([entropy, index])


def _pick(rng: np.random.Generator, options: tuple[str, ...], p: np.ndarray | None = None) -> str:
    if p is None:
        return options[int(rng.integers(len(options)))]
    return options[int(rng.choice(len(options), p=p / p.sum()))]


def _fit(second: int, lo: int, spare: float) -> int:
    """Keep a drawn second-of-day inside [lo, day end], re-spreading outliers uniformly."""
    if lo > _DAY_END:
        # Only a follow-up to a late-evening event gets here; it must still come after it.
        return min(lo, 86399)
    if lo <= second <= _DAY_END:
        return second
    # Clamping would pile events onto the window edges, so outliers are spread evenly instead.
    return lo + int(spare * (_DAY_END - lo))


def _daytime(rng: np.random.Generator, lo: int, peak: float = 13.5, spread: float = 3.5) -> int:
    """A plausible local second-of-day, never earlier than ``lo``."""
    return _fit(int(rng.normal(peak, spread) * 3600), max(lo, _DAY_START), float(rng.random()))


@dataclass
class _Persona:
    """Latent traits and ground truth of one simulated customer."""

    index: int
    timezone: str
    plan: str
    segment: str
    start_day: int
    engagement: float
    dealer: str | None
    declining: bool
    decline_day: int | None
    ramp: float
    floor: float
    request_day: int | None
    cancel_day: int | None

    def vitality(self, day: int) -> float:
        """1.0 while healthy, falling linearly to a floor after the decline day."""
        if self.decline_day is None or day < self.decline_day:
            return 1.0
        return max(self.floor, 1.0 - (day - self.decline_day) / self.ramp)


def _persona(rng: np.random.Generator, index: int, days: int) -> _Persona:
    timezone = _pick(rng, TIMEZONES, _TZ_WEIGHTS)
    plan = _pick(rng, _PLAN_NAMES, _PLAN_SHARES)
    segment = _pick(rng, SEGMENTS, _SEGMENT_SHARES[plan])
    start_day = int(rng.integers(1, days)) if days > 1 and rng.random() < 0.2 else 0
    engagement = float(rng.beta(2.2, 1.8))
    dealer = _pick(rng, DEALERS) if rng.random() < 0.3 else None
    declining = bool(rng.random() < 0.25)
    decline_day: int | None = None
    request_day: int | None = None
    cancel_day: int | None = None
    ramp = float(rng.uniform(15.0, 40.0))
    floor = float(rng.uniform(0.05, 0.3))
    if declining:
        remaining = days - start_day
        decline_day = start_day + int(remaining * rng.uniform(0.1, 0.55))
        if rng.random() < 0.6:
            # Requests land inside the window so roughly 60% of decliners visibly ask to leave.
            tail = days - decline_day
            request_day = min(days - 1, decline_day + int(tail * rng.uniform(0.3, 0.9)))
            cancel_day = request_day + int(rng.integers(0, 15))
            if cancel_day >= days:
                cancel_day = None
    return _Persona(
        index=index,
        timezone=timezone,
        plan=plan,
        segment=segment,
        start_day=start_day,
        engagement=engagement,
        dealer=dealer,
        declining=declining,
        decline_day=decline_day,
        ramp=ramp,
        floor=floor,
        request_day=request_day,
        cancel_day=cancel_day,
    )


_Emit = Callable[[int, str, dict[str, object]], None]


def _simulate(
    spec: PopulationSpec, index: int, clocks: dict[str, _Clock]
) -> tuple[_Persona, str, list[_Row]]:
    """Simulate one customer; returns persona, final plan and unsorted rows."""
    rng = _rng(spec.seed, index)
    days = spec.days
    who = _persona(rng, index, days)
    cid = _customer_id(index)
    clock = clocks.get(who.timezone)
    if clock is None:
        clock = clocks[who.timezone] = _Clock(spec.start, days, zoneinfo.ZoneInfo(who.timezone))
    rows: list[_Row] = []

    def emit(ts: int, etype: str, payload: dict[str, object]) -> None:
        partner = who.dealer if etype == "purchase" else None
        rows.append((ts, cid, etype, len(rows), SOURCES[etype], partner, payload))

    start = who.start_day
    t0_local = int(rng.integers(8 * 3600, 11 * 3600))
    t0 = clock.at(start, t0_local)
    # Other start-day events wait until onboarding (subscription, profile, consents) is done.
    first_free = t0_local + 120
    end_day = days if who.request_day is None else who.request_day

    plan_changes = _plan_change(rng, who, end_day)
    final_plan = plan_changes[-1][1] if plan_changes else who.plan

    def plan_on(day: int) -> str:
        current = who.plan
        for change_day, new_plan in plan_changes:
            if day >= change_day:
                current = new_plan
        return current

    emit(t0, "subscription.started", {"plan": who.plan, "mrr": PLANS[who.plan]})
    emit(
        t0 + 5,
        "profile.updated",
        {"timezone": who.timezone, "plan": who.plan, "segment": who.segment},
    )
    marketing = _onboarding_consents(rng, who, emit, t0 + 10)
    for change_day, new_plan in plan_changes:
        ts = clock.at(change_day, _daytime(rng, _DAY_START))
        profile = {"timezone": who.timezone, "plan": new_plan, "segment": who.segment}
        emit(ts, "profile.updated", profile)

    _usage(rng, who, clock, emit, first_free, days, spec.start.weekday())
    _purchases(rng, who, clock, emit, first_free, days)
    _tickets(rng, who, clock, emit, first_free, days)
    _renewals(rng, who, clock, emit, end_day, days, plan_on)
    revoked_day = _revocation(rng, who, clock, emit, marketing, days)
    _campaigns(rng, who, clock, emit, marketing, revoked_day, first_free, days)

    if who.request_day is not None:
        lo = first_free if who.request_day == start else _DAY_START
        request_local = _daytime(rng, lo)
        request_ts = clock.at(who.request_day, request_local)
        reason = _pick(rng, _CANCEL_REASONS)
        emit(request_ts, "subscription.cancel_requested", {"reason": reason})
        if who.cancel_day is not None:
            lo = request_local + 60 if who.cancel_day == who.request_day else _DAY_START
            cancel_ts = clock.at(who.cancel_day, _daytime(rng, lo))
            emit(cancel_ts, "subscription.cancelled", {"reason": reason})
            # A cancelled customer goes silent; equal timestamps are cut too because other
            # types could otherwise sort after the cancellation.
            rows = [r for r in rows if r[0] < cancel_ts or r[2] == "subscription.cancelled"]
    return who, final_plan, rows


def _plan_change(rng: np.random.Generator, who: _Persona, end_day: int) -> list[tuple[int, str]]:
    if end_day - who.start_day < 3 or rng.random() >= 0.07:
        return []
    day = int(rng.integers(who.start_day + 1, end_day))
    shrinking = who.decline_day is not None and day >= who.decline_day
    new_plan = (_DOWNGRADE if shrinking else _UPGRADE)[who.plan]
    return [] if new_plan == who.plan else [(day, new_plan)]


def _onboarding_consents(rng: np.random.Generator, who: _Persona, emit: _Emit, ts: int) -> set[str]:
    """Emit day-0 consents; returns the channels granted for marketing."""
    grants: list[dict[str, object]] = [
        {"channel": "email", "purpose": "service", "partner_id": None}
    ]
    marketing: set[str] = set()
    for channel, share in (("email", 0.8), ("sms", 0.4), ("push", 0.6)):
        if rng.random() < share:
            marketing.add(channel)
            grants.append({"channel": channel, "purpose": "marketing", "partner_id": None})
    if who.dealer is not None and "email" in marketing and rng.random() < 0.5:
        grants.append({"channel": "email", "purpose": "marketing", "partner_id": who.dealer})
    for offset, payload in enumerate(grants):
        emit(ts + offset, "consent.granted", payload)
    return marketing


def _usage(
    rng: np.random.Generator,
    who: _Persona,
    clock: _Clock,
    emit: _Emit,
    first_free: int,
    days: int,
    weekday0: int,
) -> None:
    start = who.start_day
    n = days - start
    if n <= 0:
        return
    e = who.engagement
    # Vectorised draws per customer keep the per-event Python work small.
    coin = rng.random(n)
    minutes = rng.gamma(2.0, (6.0 + 30.0 * e) / 2.0, n)
    sessions = rng.poisson(0.4 + 2.5 * e, n) + 1
    hours = rng.normal(13.0 if who.segment != "consumer" else 18.0, 3.0, n)
    spare = rng.random(n)
    feats = rng.choice(len(FEATURES), size=n, p=_FEATURE_WEIGHTS[who.plan])
    base = 0.3 + 0.68 * e
    business = who.segment != "consumer"
    first_weekday = (weekday0 + start) % 7
    for k in range(n):
        day = start + k
        weekday = (first_weekday + k) % 7
        weekend = weekday >= 5
        rhythm = (0.55 if weekend else 1.05) if business else (1.15 if weekend else 0.95)
        vital = who.vitality(day)
        if coin[k] >= min(0.99, base * rhythm * vital):
            continue
        lo = first_free if day == start else _DAY_START
        second = _fit(int(hours[k] * 3600), lo, float(spare[k]))
        shrink = 0.25 + 0.75 * vital
        emit(
            clock.at(day, second),
            "usage",
            {
                "sessions": max(1, round(int(sessions[k]) * shrink)),
                "minutes": round(float(minutes[k]) * shrink, 3),
                "feature": FEATURES[int(feats[k])],
            },
        )


def _purchases(
    rng: np.random.Generator,
    who: _Persona,
    clock: _Clock,
    emit: _Emit,
    first_free: int,
    days: int,
) -> None:
    # BG/NBD-style: Poisson purchasing at a gamma-distributed rate while "alive", with a
    # beta-distributed chance of silently dropping out after every purchase.
    rate = float(rng.gamma(1.1, (0.04 + 0.16 * who.engagement) / 1.1))
    drop = float(rng.beta(0.6, 24.0))
    basket = float(rng.lognormal(3.4, 0.45))
    t = who.start_day + float(rng.exponential(1.0 / max(rate, 1e-6)))
    order = 0
    while t < days:
        day = int(t)
        t += float(rng.exponential(1.0 / max(rate, 1e-6)))
        # Thinning by vitality lets decline suppress purchases without a second process.
        if rng.random() >= who.vitality(day):
            continue
        order += 1
        lo = first_free if day == who.start_day else _DAY_START
        items = 1 + int(rng.poisson(0.8))
        amount = round(basket * items * float(rng.lognormal(0.0, 0.25)), 2)
        emit(
            clock.at(day, _daytime(rng, lo, peak=15.0, spread=3.0)),
            "purchase",
            {
                "amount": max(amount, 0.5),
                "currency": "EUR",
                "order_id": f"o-{who.index:05d}-{order:04d}",
                "items": items,
            },
        )
        if rng.random() < drop:
            break


def _tickets(
    rng: np.random.Generator,
    who: _Persona,
    clock: _Clock,
    emit: _Emit,
    first_free: int,
    days: int,
) -> None:
    n = days - who.start_day
    if n <= 0:
        return
    coin = rng.random(n)
    opened = 0
    for k in range(n):
        day = who.start_day + k
        vital = who.vitality(day)
        unhappy = vital < 1.0
        rate = 0.008 + 0.004 * (who.plan == "team") + 0.06 * (1.0 - vital)
        if coin[k] >= rate:
            continue
        opened += 1
        ticket_id = f"t-{who.index:05d}-{opened:03d}"
        if unhappy:
            topic = _pick(rng, _UNHAPPY_TOPICS)
            sentiment = float(rng.normal(-0.45, 0.3))
        else:
            topic = _pick(rng, _HAPPY_TOPICS)
            sentiment = float(rng.normal(0.25, 0.3))
        lo = first_free if day == who.start_day else _DAY_START
        open_local = _daytime(rng, lo, peak=12.0, spread=2.5)
        emit(
            clock.at(day, open_local),
            "support.ticket",
            {
                "ticket_id": ticket_id,
                "status": "open",
                "sentiment": round(min(1.0, max(-1.0, sentiment)), 3),
                "topic": topic,
            },
        )
        if rng.random() >= 0.88:
            continue
        close_day = day + int(rng.integers(1, 6))
        if close_day >= days:
            continue
        # Resolution nudges the mood up, less so for customers who are already drifting away.
        closing = sentiment + float(rng.normal(0.1 if unhappy else 0.25, 0.2))
        emit(
            clock.at(close_day, _daytime(rng, _DAY_START, peak=14.0, spread=2.5)),
            "support.ticket",
            {
                "ticket_id": ticket_id,
                "status": "closed",
                "sentiment": round(min(1.0, max(-1.0, closing)), 3),
                "topic": topic,
            },
        )


def _renewals(
    rng: np.random.Generator,
    who: _Persona,
    clock: _Clock,
    emit: _Emit,
    end_day: int,
    days: int,
    plan_on: Callable[[int], str],
) -> None:
    due = who.start_day + 30
    while due < min(end_day, days):
        plan = plan_on(due)
        vital = who.vitality(due)
        fail_chance = 0.03 if vital >= 1.0 else 0.15 + 0.4 * (1.0 - vital)
        failures = int(rng.integers(1, 4)) if rng.random() < fail_chance else 0
        reason = _pick(rng, _PAYMENT_REASONS)
        for attempt in range(1, failures + 1):
            day = due + attempt - 1
            if day >= days:
                break
            emit(
                clock.at(day, int(rng.integers(_DAY_START, 9 * 3600))),
                "payment.failed",
                {"amount": PLANS[plan], "reason": reason, "attempt": attempt},
            )
        paid_day = due + failures
        if paid_day < min(end_day, days):
            emit(
                clock.at(paid_day, int(rng.integers(9 * 3600, 10 * 3600))),
                "subscription.renewed",
                {"plan": plan, "mrr": PLANS[plan]},
            )
        due += 30


def _revocation(
    rng: np.random.Generator,
    who: _Persona,
    clock: _Clock,
    emit: _Emit,
    marketing: set[str],
    days: int,
) -> int | None:
    """Maybe revoke email marketing later on; returns the revocation day."""
    chance = 0.1 if who.declining else 0.035
    if "email" not in marketing or days - who.start_day < 3 or rng.random() >= chance:
        return None
    lo = who.decline_day if who.decline_day is not None else who.start_day + 1
    day = int(rng.integers(max(lo, who.start_day + 1), days))
    emit(
        clock.at(day, _daytime(rng, _DAY_START)),
        "consent.revoked",
        {"channel": "email", "purpose": "marketing", "partner_id": None},
    )
    return day


def _campaigns(
    rng: np.random.Generator,
    who: _Persona,
    clock: _Clock,
    emit: _Emit,
    marketing: set[str],
    revoked_day: int | None,
    first_free: int,
    days: int,
) -> None:
    if "email" not in marketing or who.engagement < 0.55:
        return
    for number, day in enumerate(range(3, days, _CAMPAIGN_EVERY), start=1):
        if day < who.start_day or (revoked_day is not None and day >= revoked_day):
            continue
        vital = who.vitality(day)
        if rng.random() >= 0.45 * who.engagement * vital:
            continue
        lo = first_free if day == who.start_day else _DAY_START
        opened_local = _daytime(rng, lo, peak=10.0, spread=2.0)
        payload: dict[str, object] = {
            "channel": "email",
            "message_id": f"m-{number:03d}-{who.index:05d}",
            "campaign": _CAMPAIGNS[(number - 1) % len(_CAMPAIGNS)],
        }
        emit(clock.at(day, opened_local), "channel.opened", payload)
        if rng.random() < 0.3:
            clicked_local = min(opened_local + int(rng.integers(5, 600)), 86399)
            emit(clock.at(day, clicked_local), "channel.clicked", dict(payload))


def _format_ts(epoch: int, dates: dict[int, str]) -> str:
    day, second = divmod(epoch, 86400)
    date = dates.get(day)
    if date is None:
        date = dates[day] = datetime.date.fromordinal(_EPOCH_ORDINAL + day).isoformat()
    hour, rest = divmod(second, 3600)
    minute, sec = divmod(rest, 60)
    return f"{date}T{hour:02d}:{minute:02d}:{sec:02d}Z"


def _sorted_rows(spec: PopulationSpec) -> list[_Row]:
    clocks: dict[str, _Clock] = {}
    rows: list[_Row] = []
    if spec.days <= 0:
        return rows
    for index in range(1, spec.customers + 1):
        rows.extend(_simulate(spec, index, clocks)[2])
    # Rows are unique on (ts, customer_id, type, seq), so payload dicts are never compared.
    rows.sort()
    return rows


def generate(spec: PopulationSpec) -> Iterator[dict[str, object]]:
    """Yield event envelopes (plain dicts) sorted by (occurred_at, event_id)."""
    dates: dict[int, str] = {}
    for n, (ts, cid, etype, _seq, source, partner, payload) in enumerate(
        _sorted_rows(spec), start=1
    ):
        yield {
            "event_id": f"e-{spec.seed}-{n:08d}",
            "type": etype,
            "customer_id": cid,
            "occurred_at": _format_ts(ts, dates),
            "source": source,
            "partner_id": partner,
            "schema_version": 1,
            "payload": payload,
        }


def write_jsonl(spec: PopulationSpec, path: pathlib.Path, limit: int | None = None) -> int:
    """Write the history as JSONL (orjson, keys sorted, one envelope a line); return the count."""
    events = generate(spec)
    if limit is not None:
        events = itertools.islice(events, max(0, limit))
    count = 0
    with path.open("wb") as fh:
        for event in events:
            fh.write(orjson.dumps(event, option=_SORT_OPTS))
            count += 1
    return count


def truth(spec: PopulationSpec) -> dict[str, dict[str, object]]:
    """Ground truth per customer: decline/cancel days (window day index), timezone, final plan."""
    clocks: dict[str, _Clock] = {}
    result: dict[str, dict[str, object]] = {}
    if spec.days <= 0:
        return result
    for index in range(1, spec.customers + 1):
        who, final_plan, _rows = _simulate(spec, index, clocks)
        result[_customer_id(index)] = {
            "declining": who.declining,
            "decline_day": who.decline_day,
            "cancelled": who.cancel_day is not None,
            "cancel_day": who.cancel_day,
            "timezone": who.timezone,
            "plan": final_plan,
        }
    return result
