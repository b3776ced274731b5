"""Per-customer state and the pure `apply(state, event) -> state`.

State is kept in event time as commutative pieces (per-family day buckets, lifetime totals, the set
of purchase days, and last-writer-wins registers keyed by (time, event id)), so events that arrive
out of order inside the windows give exactly the state in-order arrival gives.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tenure.events.envelope import (
    PAYLOADS,
    ChannelOutcome,
    Consent,
    Event,
    ProfileUpdated,
    Subscription,
    SupportTicket,
)

DAY_S = 86_400
# Longest feature window; day buckets older than this (from the newest event) are dropped.
KEEP_DAYS = 90

# Amounts are kept in integer millionths: integer sums do not depend on the order of addition,
# float sums do, and out-of-order arrival must give the same state bit for bit.
MICROS = 1_000_000
Bucket = tuple[int, int]  # (count, amount in millionths) of one family on one UTC day
Register = tuple[int, str, Any]  # (time s, event id, value): the newest (time, id) wins

SUBSCRIPTION_STATUS = {
    "subscription.started": "active",
    "subscription.renewed": "active",
    "subscription.cancel_requested": "cancel_requested",
    "subscription.cancelled": "cancelled",
}


def _last_of(last_at: Mapping[str, int], types: frozenset[str]) -> int | None:
    """The newest of the times of `types` in `last_at`, or None when none is there."""
    times = [last_at[t] for t in types if t in last_at]
    return max(times) if times else None


@dataclass(frozen=True, slots=True)
class CustomerState:
    """Everything tenure remembers about one customer, derived only from that customer's events."""

    customer_id: str
    first_seen: int | None = None  # epoch seconds
    last_seen: int | None = None
    totals: Mapping[str, Bucket] = field(
        default_factory=dict
    )  # lifetime count and amount per family
    daily: Mapping[str, Mapping[int, Bucket]] = field(
        default_factory=dict
    )  # family -> day -> bucket
    purchase_days: frozenset[int] = frozenset()
    registers: Mapping[str, Register] = field(default_factory=dict)
    # Newest time of each event type: what silence timers count from (features/instants.py).
    last_at: Mapping[str, int] = field(default_factory=dict)

    def last_of(self, types: frozenset[str]) -> int | None:
        """The newest time of any event of `types`, or None when there was none."""
        return _last_of(self.last_at, types)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready form for the store."""
        # Written on every batch for every customer touched: kept to structures orjson encodes
        # natively (day keys become strings), so encoding costs no Python loop.
        return {
            "customer_id": self.customer_id,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "totals": self.totals,
            "daily": self.daily,
            "purchase_days": sorted(self.purchase_days),  # one form, however it was built
            "registers": self.registers,
            "last_at": self.last_at,
        }

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> CustomerState:
        """Rebuild a state from `to_record()` output."""
        return cls(
            customer_id=rec["customer_id"],
            first_seen=rec["first_seen"],
            last_seen=rec["last_seen"],
            totals={k: (int(v[0]), int(v[1])) for k, v in rec["totals"].items()},
            daily={
                f: {int(d): (int(v[0]), int(v[1])) for d, v in days.items()}
                for f, days in rec["daily"].items()
            },
            purchase_days=frozenset(rec["purchase_days"]),
            registers={k: (int(v[0]), str(v[1]), v[2]) for k, v in rec["registers"].items()},
            last_at={k: int(v) for k, v in (rec.get("last_at") or {}).items()},
        )


# Which payload field is the amount a type adds to its family (money, minutes or sentiment).
_AMOUNT_FIELD = {
    "usage": "minutes",
    "purchase": "amount",
    "payment.failed": "amount",
    "support.ticket": "sentiment",
}
_FAMILY = {t: t.partition(".")[0] for t in PAYLOADS}
# Amounts that are money, counted in the reporting currency at the rate the parser recorded.
_MONEY = frozenset({"purchase", "payment.failed"})


def _registers(event: Event) -> Iterable[tuple[str, Any]]:
    """The last-writer-wins facts an event states."""
    p = event.payload
    if isinstance(p, Subscription):
        yield "subscription", SUBSCRIPTION_STATUS[event.type]
        if p.plan is not None:
            yield "plan", p.plan
        if p.mrr is not None:
            yield "mrr", p.mrr if p.rate is None else p.mrr * p.rate
    elif isinstance(p, ProfileUpdated):
        for name in ("timezone", "plan", "segment"):
            value = getattr(p, name)
            if value is not None:
                yield name, value
        # The language messages are written in: a payload field once the schema has one, until
        # then the extra field producers send (kept, per the compatibility rule).
        locale = locale_tag(getattr(p, "locale", None) or (event.extra or {}).get("locale"))
        if locale is not None:
            yield "locale", locale
    elif isinstance(p, Consent):
        key = f"consent:{p.channel}:{p.purpose}" + (f":{p.partner_id}" if p.partner_id else "")
        yield key, event.type == "consent.granted"
    elif isinstance(p, ChannelOutcome) and event.type == "channel.unsubscribed":
        # An unsubscribe withdraws marketing consent on that channel, whatever came before.
        yield f"consent:{p.channel}:marketing", False
    elif isinstance(p, SupportTicket):
        yield f"ticket:{p.ticket_id}", p.status


_LOCALE = re.compile(r"^([A-Za-z]{2,3})(?:[-_]([A-Za-z0-9]{2,8}))?$")
# What a message may say about the customer (channels/messages.py): the profile registers.
TRAITS = ("plan", "segment", "timezone", "locale")


def locale_tag(value: Any) -> str | None:
    """A language tag as messages look it up (`fr`, `fr-CA`), or None when `value` is none."""
    m = _LOCALE.match(value) if isinstance(value, str) else None
    if m is None:
        return None
    language, region = m.group(1).lower(), m.group(2)
    if region is None:
        return language
    return f"{language}-{region.upper() if len(region) == 2 else region}"


def traits(state: CustomerState) -> dict[str, str | None]:
    """The customer's plan, segment, time zone and locale (None where never stated)."""
    return {
        name: (None if (r := state.registers.get(name)) is None else str(r[2])) for name in TRAITS
    }


# Types whose events set last-writer-wins registers; others skip that work on the hot path.
_REGISTER_TYPES = frozenset(SUBSCRIPTION_STATUS) | {
    "profile.updated",
    "consent.granted",
    "consent.revoked",
    "channel.unsubscribed",
    "support.ticket",
}


def apply(state: CustomerState, event: Event) -> CustomerState:
    """Return the state after one more event (the input state is not changed)."""
    return apply_all(state, (event,))


def _forget_before_horizon(
    last_before: int | None,
    last: int,
    oldest_day: int,
    daily: dict[str, Any],
    copied: set[str],
    registers: dict[str, Any],
) -> None:
    """Drop day buckets and ticket registers older than the kept window (in place, copying a
    family's buckets before the first change, as `apply_all` does)."""
    horizon_day = last // DAY_S - KEEP_DAYS + 1
    before = (last_before // DAY_S - KEEP_DAYS + 1) if last_before is not None else None
    # Scan for stale entries only when something can have become stale: the horizon moved,
    # or an event older than it arrived. Otherwise the copy is already clean.
    if before is not None and horizon_day <= before and oldest_day >= horizon_day:
        return
    for family in list(daily):
        stale = [d for d in daily[family] if d < horizon_day]
        if stale:
            if family not in copied:
                copied.add(family)
                daily[family] = dict(daily[family])
            for d in stale:
                del daily[family][d]
    horizon_s = horizon_day * DAY_S
    for name in [n for n, r in registers.items() if r[0] < horizon_s and n.startswith("ticket:")]:
        del registers[name]


def apply_all(state: CustomerState, events: Iterable[Event]) -> CustomerState:
    """Return the state after several events, in any order; the result does not depend on order.

    Pure from the caller's side: the input state is never changed (see `Fold`).
    """
    fold = Fold(state)
    fold.add(events)
    return fold.state()


class Fold:
    """A customer's state folding events in place: `apply_all`, one step at a time.

    Written by hand for the hot path: a customer is walked through every decision instant of a
    batch, and a copy of the state per instant (what calling `apply_all` at each would cost)
    dominated ingest. The input state is copied once, family by family as events touch them,
    and never changed. `state()` is a view of the fold so far; it is only valid until the next
    `add`, so take a snapshot of it (or stop adding) before folding more.
    """

    __slots__ = (
        "_clean",
        "_copied",
        "_frozen_days",
        "_newest",
        "_oldest",
        "_purchase_days",
        "cid",
        "daily",
        "first",
        "last",
        "last_at",
        "registers",
        "start",
        "totals",
    )

    def __init__(self, state: CustomerState) -> None:
        self.start = state
        self.cid = state.customer_id
        self.first, self.last = state.first_seen, state.last_seen
        self.totals = dict(state.totals)
        # Copy-on-write per family: a family with no new event shares the old state's buckets.
        self.daily: dict[str, Any] = dict(state.daily)
        self._copied: set[str] = set()
        self._purchase_days: set[int] | None = None
        self._frozen_days: frozenset[int] = state.purchase_days
        self.registers = dict(state.registers)
        self.last_at = dict(state.last_at)
        self._clean = state.last_seen  # the newest time the kept window was last cut at
        self._oldest: int | None = None  # the oldest day folded since
        self._newest: dict[str, int] = {}  # newest day per family, as asked (`newest_day`)

    def add(self, events: Iterable[Event]) -> None:
        """Fold `events` (any order) into the state."""
        oldest_day = self._oldest
        newest = self._newest
        totals, daily, copied, last_at = self.totals, self.daily, self._copied, self.last_at
        for event in events:
            if event.customer_id != self.cid:
                raise ValueError(
                    f"event {event.event_id} is for {event.customer_id}, not {self.cid}"
                )
            at = int(event.occurred_at.timestamp())
            if self.first is None or at < self.first:
                self.first = at
            if self.last is None or at > self.last:
                self.last = at
            etype = event.type
            if last_at.get(etype, -1) < at:
                last_at[etype] = at
            family = _FAMILY.get(etype) or etype.partition(".")[0]
            field_name = _AMOUNT_FIELD.get(etype)
            value = getattr(event.payload, field_name) if field_name else None
            if value and etype in _MONEY and event.payload.rate is not None:
                value *= event.payload.rate  # into the reporting currency (events/money.py)
            amount = round(value * MICROS) if value else 0
            count, total = totals.get(family, (0, 0))
            totals[family] = (count + 1, total + amount)
            day = at // DAY_S
            if oldest_day is None or day < oldest_day:
                oldest_day = day
            if family not in copied:
                copied.add(family)
                daily[family] = dict(daily.get(family, ()))
            bucket = daily[family]
            count, total = bucket.get(day, (0, 0))
            bucket[day] = (count + 1, total + amount)
            if newest.get(family, day) < day:
                newest[family] = day
            if family == "purchase":
                if self._purchase_days is None:
                    self._purchase_days = set(self.start.purchase_days)
                if day not in self._purchase_days:
                    self._purchase_days.add(day)
                    self._frozen_days = frozenset(self._purchase_days)
            if etype in _REGISTER_TYPES:
                self._register(event, at)
        # What fell out of the kept window is dropped when the state is read (`state`), once
        # for all the adds since: a walk reads its briefs through the window instead.
        self._oldest = oldest_day

    def newest_day(self, family: str) -> int:
        """The newest day with an event of `family` folded so far (-1 when none); it may lie
        before the kept window until the state is read."""
        day = self._newest.get(family)
        if day is None:
            bucket = self.daily.get(family)
            day = self._newest[family] = max(bucket) if bucket else -1
        return day

    def last_of(self, types: frozenset[str]) -> int | None:
        """`CustomerState.last_of` of the state folded so far."""
        return _last_of(self.last_at, types)

    def _register(self, event: Event, at: int) -> None:
        key = (at, event.event_id)
        for name, reg_value in _registers(event):
            old = self.registers.get(name)
            if old is None or (old[0], old[1]) < key:
                self.registers[name] = (at, event.event_id, reg_value)

    def state(self) -> CustomerState:
        """The state folded so far (a view: valid until the next `add`)."""
        if self._oldest is not None and self.last is not None:
            _forget_before_horizon(
                self._clean, self.last, self._oldest, self.daily, self._copied, self.registers
            )
            self._clean, self._oldest = self.last, None
        return CustomerState(
            customer_id=self.cid,
            first_seen=self.first,
            last_seen=self.last,
            totals=self.totals,
            daily={f: b for f, b in self.daily.items() if b},
            purchase_days=self._frozen_days,
            registers=self.registers,
            last_at=self.last_at,
        )


def merge_states(survivor: CustomerState, merged: CustomerState) -> CustomerState:
    """One customer's state from two ids' (`merged` joins `survivor`, whose id it keeps): what
    folding both ids' events into one state gives, since every piece is commutative (sums per
    day and family, the union of purchase days, the newest register by (time, event id))."""
    totals = dict(survivor.totals)
    for family, (count, amount) in merged.totals.items():
        c, a = totals.get(family, (0, 0))
        totals[family] = (c + count, a + amount)
    daily: dict[str, dict[int, Bucket]] = {f: dict(b) for f, b in survivor.daily.items()}
    for family, buckets in merged.daily.items():
        mine = daily.setdefault(family, {})
        for day, (count, amount) in buckets.items():
            c, a = mine.get(day, (0, 0))
            mine[day] = (c + count, a + amount)
    registers = dict(survivor.registers)
    for name, reg in merged.registers.items():
        old = registers.get(name)
        if old is None or (old[0], old[1]) < (reg[0], reg[1]):
            registers[name] = reg
    last_at = dict(survivor.last_at)
    for etype, at in merged.last_at.items():
        last_at[etype] = max(at, last_at.get(etype, at))
    seen = [t for t in (survivor.first_seen, merged.first_seen) if t is not None]
    last = [t for t in (survivor.last_seen, merged.last_seen) if t is not None]
    if last:
        # The kept window runs from the newer of the two: drop what fell out of it.
        oldest = min((d for b in daily.values() for d in b), default=max(last) // DAY_S)
        _forget_before_horizon(None, max(last), oldest, daily, set(daily), registers)
    return CustomerState(
        customer_id=survivor.customer_id,
        first_seen=min(seen) if seen else None,
        last_seen=max(last) if last else None,
        totals=totals,
        daily={f: b for f, b in daily.items() if b},
        purchase_days=survivor.purchase_days | merged.purchase_days,
        registers=registers,
        last_at=last_at,
    )
