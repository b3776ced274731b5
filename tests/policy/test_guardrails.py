"""Guardrails hold whatever the order and volume of decisions (property-based)."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from collections import Counter

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tenure.features.snapshot import snapshot
from tenure.features.state import CustomerState, apply_all
from tenure.policy.decide import DecisionMemory, TriggerContext, decide
from tenure.policy.guardrails import (
    Cap,
    Contact,
    GuardrailSettings,
    QuietHours,
    cap_block,
    delivery_time,
    in_control_group,
)
from tenure.policy.inputs import DecisionInputs
from tenure.policy.model import default_policy, parse_policy
from tenure.scoring.types import Score
from tests.helpers import T0, ev

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Asia/Kolkata",
]
SIGNAL = TriggerContext("e", "payment.failed", frozenset({"payment.failed"}))
GUARDS = GuardrailSettings(
    caps=(Cap(max=1, per="day"), Cap(max=2, per="week"), Cap(max=1, per="week", channel="sms")),
    quiet_hours=QuietHours(start=dt.time(21), end=dt.time(8), mode="defer"),
    control_share=0.0,
)


def base_features(customer: str, zone: str, consents: frozenset[str]):
    events = [
        ev("subscription.renewed", customer, at=0, plan="pro", mrr=49.0),
        ev("profile.updated", customer, at=0.1, timezone=zone),
    ]
    events += [
        ev("consent.granted", customer, at=0.2, channel=c, purpose="marketing")
        for c in sorted(consents)
    ]
    return snapshot(apply_all(CustomerState(customer), events), T0 + dt.timedelta(days=1))


def policy(cooldown: float, budget: float | None):
    data = default_policy().model_dump(mode="json")
    data["guardrails"] = {"cooldown_days": cooldown}
    data["trigger"]["on_events"] = ["payment.failed"]
    if budget is not None:
        data["budget"] = {"amount": budget, "period": "week"}
    return parse_policy(data)


def local_key(at: str, zone: str, per: str) -> tuple[int, ...]:
    t = dt.datetime.fromisoformat(at).astimezone(zoneinfo.ZoneInfo(zone))
    return (t.year, t.month, t.day) if per == "day" else tuple(t.isocalendar()[:2])


@settings(max_examples=150, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    consents=st.frozensets(st.sampled_from(["email", "sms", "push"])),
    gaps_hours=st.lists(st.floats(min_value=0.1, max_value=60.0), min_size=1, max_size=40),
    cooldown=st.sampled_from([1.0, 1.5, 3.0]),
    budget=st.one_of(st.none(), st.sampled_from([0.0, 4.5, 9.0, 20.0])),
    customer=st.sampled_from(["c-1", "c-2", "c-3", "c-77"]),
)
def test_no_sequence_of_decisions_breaks_a_guardrail(
    zone, consents, gaps_hours, cooldown, budget, customer
) -> None:
    features = base_features(customer, zone, consents)
    pol = policy(cooldown, budget)
    memory, now, spent = DecisionMemory(), T0 + dt.timedelta(days=1), Counter()
    actions = []
    for i, gap in enumerate(gaps_hours):
        now += dt.timedelta(hours=gap)
        f = msgspec.structs.replace(features, as_of=now.isoformat())
        trigger = TriggerContext(f"e-{i}", "payment.failed", frozenset({"payment.failed"}))
        period = pol.budget.period_key(now) if pol.budget else ""
        score = Score("test", "1", 0.95, 2000.0, ())
        out = decide(DecisionInputs(f, score, memory, trigger, now, GUARDS, spent[period]), pol)
        memory = out.memory
        d = out.decision
        assert d is not None
        if d.status == "action":
            spent[period] += d.cost
            actions.append(d)
    tz = zoneinfo.ZoneInfo(zone)
    for d in actions:
        assert d.channel in consents  # consent
        local = dt.datetime.fromisoformat(d.deliver_at).astimezone(tz).time()
        assert not (local >= dt.time(21) or local < dt.time(8))  # quiet hours
    for per, limit in (("day", 1), ("week", 2)):
        counts = Counter(local_key(d.deliver_at, zone, per) for d in actions)
        assert max(counts.values(), default=0) <= limit
    sms_weeks = Counter(
        local_key(d.deliver_at, zone, "week") for d in actions if d.channel == "sms"
    )
    assert max(sms_weeks.values(), default=0) <= 1
    if budget is not None:
        assert all(v <= budget + 1e-9 for v in spent.values())
    starts = sorted(dt.datetime.fromisoformat(d.decided_at) for d in actions)
    assert all(
        (b - a).total_seconds() >= cooldown * 86_400 - 1e-6 for a, b in itertools.pairwise(starts)
    )


@given(customer=st.text(min_size=1, max_size=20))
def test_control_group_customers_are_never_treated(customer: str) -> None:
    guards = GuardrailSettings(control_share=0.5, control_salt="s")
    features = base_features(customer, "UTC", frozenset({"email", "sms", "push"}))
    now = T0 + dt.timedelta(days=2, hours=12)
    score = Score("t", "1", 0.9, 900, ())
    out = decide(
        DecisionInputs(features, score, DecisionMemory(), SIGNAL, now, guards), policy(1.0, None)
    )
    assert out.decision is not None
    if in_control_group(customer, guards):
        assert out.decision.status == "suppressed" and out.decision.guardrail == "control_group"
    else:
        assert out.decision.status == "action"


def test_control_group_share_is_close_to_the_setting() -> None:
    guards = GuardrailSettings(control_share=0.1)
    share = sum(in_control_group(f"c-{i}", guards) for i in range(20_000)) / 20_000
    assert 0.09 < share < 0.11


def test_quiet_hours_defer_to_the_local_morning_across_dst() -> None:
    tz = zoneinfo.ZoneInfo("Europe/Berlin")
    # 23:30 local on the night clocks go forward (2026-03-29): delivery at 08:00 CEST.
    now = dt.datetime(2026, 3, 28, 22, 30, tzinfo=dt.UTC)
    at, why = delivery_time(now, tz, QuietHours())
    assert at == dt.datetime(2026, 3, 29, 6, 0, tzinfo=dt.UTC) and "deferred" in why
    dropped, why = delivery_time(now, tz, QuietHours(mode="drop"))
    assert dropped is None and "quiet hours" in why
    assert delivery_time(dt.datetime(2026, 3, 28, 12, tzinfo=dt.UTC), tz, QuietHours())[1] is None


def test_caps_count_in_the_customers_day() -> None:
    tokyo = zoneinfo.ZoneInfo("Asia/Tokyo")
    sent = [Contact(int(dt.datetime(2026, 3, 1, 14, tzinfo=dt.UTC).timestamp()), "email")]  # 23:00
    next_utc_day_same_tokyo_day = dt.datetime(2026, 3, 1, 14, 30, tzinfo=dt.UTC)
    assert cap_block(sent, "email", next_utc_day_same_tokyo_day, tokyo, [Cap(max=1, per="day")])
    tokyo_next_day = dt.datetime(2026, 3, 1, 15, 30, tzinfo=dt.UTC)  # 00:30 in Tokyo
    assert cap_block(sent, "email", tokyo_next_day, tokyo, [Cap(max=1, per="day")]) is None
