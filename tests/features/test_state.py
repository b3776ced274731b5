"""Features: the incremental state agrees with brute force over the raw events, in any order."""

from __future__ import annotations

import datetime as dt
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tenure.events.envelope import Event
from tenure.features.snapshot import WINDOWS_DAYS, snapshot
from tenure.features.state import DAY_S, CustomerState, apply, apply_all
from tests.fixtures.features import history
from tests.helpers import T0, ev


def day(e: Event) -> int:
    return int(e.occurred_at.timestamp()) // DAY_S


def latest(events: list[Event]) -> Event:
    return max(events, key=lambda e: (e.occurred_at, e.event_id))


def test_snapshot_matches_brute_force_at_every_prefix() -> None:
    events = sorted(history(1), key=lambda e: (e.occurred_at, e.event_id))
    state = CustomerState("c-1")
    for i, event in enumerate(events, start=1):
        state = apply(state, event)
        seen = events[:i]
        as_of = event.occurred_at
        today = int(as_of.timestamp()) // DAY_S
        f = snapshot(state, as_of)
        for family in ("usage", "purchase", "support", "payment"):
            for w in WINDOWS_DAYS:
                hits = [
                    e for e in seen if e.type.split(".")[0] == family and 0 <= today - day(e) < w
                ]
                assert f.windows[f"{family}_count_{w}d"] == len(hits), (family, w, i)
        usage = [e for e in seen if e.type == "usage"]
        last7 = sum(1 for e in usage if 0 <= today - day(e) < 7)
        prev21 = sum(1 for e in usage if 7 <= today - day(e) < 28)
        assert f.usage_7d == last7 and f.usage_prev_21d == prev21
        assert f.usage_trend == (round((last7 / 7) / (prev21 / 21), 6) if prev21 else None)
        purchase_days = sorted({day(e) for e in seen if e.type == "purchase"})
        assert f.frequency == max(len(purchase_days) - 1, 0)
        if purchase_days:
            assert f.recency_days == purchase_days[-1] - purchase_days[0]
            assert f.age_days == today - purchase_days[0]
        assert f.payment_failures_30d == sum(
            1 for e in seen if e.type == "payment.failed" and 0 <= today - day(e) < 30
        )
        assert f.first_seen == min(e.occurred_at for e in seen).isoformat()
        email = [
            e
            for e in seen
            if e.type.startswith(("consent.", "channel.unsubscribed"))
            and e.payload.channel == "email"
        ]
        if email:
            assert f.consent["email:marketing"] is (latest(email).type == "consent.granted")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), order=st.randoms(use_true_random=False))
def test_any_order_gives_the_same_state(seed: int, order: random.Random) -> None:
    events = history(seed, n=60, days=80)
    in_order = apply_all(CustomerState("c-1"), sorted(events, key=lambda e: e.occurred_at))
    shuffled = list(events)
    order.shuffle(shuffled)
    one_by_one = CustomerState("c-1")
    for e in shuffled:
        one_by_one = apply(one_by_one, e)
    assert one_by_one == in_order
    assert CustomerState.from_record(in_order.to_record()) == in_order


def test_apply_does_not_change_its_input() -> None:
    before = apply(CustomerState("c-1"), ev("usage", minutes=1.0))
    copy = CustomerState.from_record(before.to_record())
    apply(before, ev("usage", at=1, minutes=2.0))
    assert before == copy


def test_window_edges_and_pruning() -> None:
    state = apply_all(
        CustomerState("c-1"),
        [
            ev("usage", at=0, minutes=1.0),
            ev("usage", at=6.9, minutes=1.0),
            ev("usage", at=100, minutes=1.0),
        ],
    )
    f = snapshot(state, T0 + dt.timedelta(days=100))
    assert f.windows["usage_count_90d"] == 1  # the day-0 and day-6 events fell out of the window
    assert state.totals["usage"][0] == 3  # lifetime totals keep them
    assert all(d >= (T0.timestamp() // DAY_S) + 11 for d in state.daily["usage"])


def test_open_tickets_and_sentiment() -> None:
    state = apply_all(
        CustomerState("c-1"),
        [
            ev("support.ticket", at=0, ticket_id="a", status="open", sentiment=-0.8),
            ev("support.ticket", at=1, ticket_id="b", status="open", sentiment=-0.2),
            ev("support.ticket", at=2, ticket_id="a", status="closed", sentiment=0.4),
        ],
    )
    f = snapshot(state, T0 + dt.timedelta(days=3))
    assert f.open_tickets == 1
    assert f.tickets_30d == 3
    assert f.mean_sentiment_30d == round((-0.8 - 0.2 + 0.4) / 3, 6)


def test_state_refuses_another_customers_event() -> None:
    try:
        apply(CustomerState("c-1"), ev("usage", customer="c-2"))
    except ValueError as exc:
        assert "c-2" in str(exc)
    else:
        raise AssertionError("expected a refusal")
