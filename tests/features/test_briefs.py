"""Briefs: the pipeline scores every instant from its `Brief` and builds the full snapshot only
where a decision is considered. Both walks (eager and brief) must see the same instants, and each
brief must hold exactly the features the full snapshot has, so the risk is the same to the bit,
including across the kept window's edge (days and tickets older than 90 days are dropped)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from tenure.events.envelope import Event
from tenure.features.instants import (
    ACTIVITY_TYPES,
    Advanced,
    Cadence,
    Silence,
    advance,
    event_order,
    seconds,
)
from tenure.features.snapshot import Brief, brief, snapshot
from tenure.features.state import DAY_S, CustomerState, apply_all
from tenure.scoring.baseline import BaselineScorer
from tenure.scoring.types import BriefScorer
from tests.fixtures.features import history
from tests.helpers import ev

CADENCE = Cadence(
    silences=(
        Silence(ACTIVITY_TYPES, 7 * DAY_S),
        Silence(ACTIVITY_TYPES, 30 * DAY_S),
        Silence(frozenset({"payment.failed"}), 3 * DAY_S),
    )
)


def _walk(events: list[Event], cuts: list[int], eager: bool) -> list[Advanced]:
    """The customer walked batch by batch (the watermark at each cut), as the pipeline does."""
    events = sorted(events, key=event_order)
    first = seconds(events[0])
    marks = [*sorted({first + c for c in cuts}), seconds(events[-1]) + 120 * DAY_S]
    state, through, pending, floor = CustomerState(events[0].customer_id), 0, [], 0
    out = []
    for until in marks:
        arrived = [e for e in events if floor <= seconds(e) < until]
        pending = sorted([*pending, *arrived], key=event_order)
        adv = advance(state, through, pending, CADENCE, floor, until, eager)
        out.append(adv)
        state, through, pending, floor = adv.state, adv.through, adv.pending, until
    return out


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 260),
    days=st.integers(20, 400),
    cuts=st.lists(st.integers(0, 400 * DAY_S), max_size=6),
)
def test_brief_walk_sees_what_the_eager_walk_sees(
    seed: int, n: int, days: int, cuts: list[int]
) -> None:
    events = history(seed, n=n, days=days)
    eager, lazy = _walk(events, cuts, True), _walk(events, cuts, False)
    scorer = BaselineScorer()
    assert isinstance(scorer, BriefScorer)
    for a, b in zip(eager, lazy, strict=True):
        assert a.state.to_record() == b.state.to_record()
        assert (a.through, a.due, a.pending) == (b.through, b.due, b.pending)
        assert len(a.instants) == len(b.instants)
        for x, y in zip(a.instants, b.instants, strict=True):
            assert (x.at, x.period, x.silences, x.seen_types, x.newest) == (
                y.at,
                y.period,
                y.silences,
                y.seen_types,
                y.newest,
            )
            assert isinstance(y.brief, Brief)
            for name in Brief.__struct_fields__:
                assert getattr(y.brief, name) == getattr(x.features, name), name
            # The snapshot a brief instant builds when asked is the eager one.
            assert y.features == x.features
        risks = scorer.risk_many([i.brief for i in b.instants])
        full = scorer.score_many([i.features for i in a.instants])
        assert risks == [s.risk for s in full]


def test_brief_of_a_stored_state_reads_through_the_kept_window() -> None:
    """A state read from the store (not a fold) gives the same brief as its snapshot, at
    instants long after it, when the open tickets and activity have fallen out of the window."""
    events = history(7, n=200, days=200)
    state = apply_all(CustomerState(events[0].customer_id), events)
    assert state.last_seen is not None
    for later in (0, 1, 29, 89, 90, 91, 400):
        at = state.last_seen + 1 + later * DAY_S
        full = snapshot(state, dt.datetime.fromtimestamp(at, dt.UTC))
        b = brief(state, at)
        assert {n: getattr(b, n) for n in Brief.__struct_fields__} == {
            n: getattr(full, n) for n in Brief.__struct_fields__
        }


def test_a_customer_with_no_activity_in_the_first_days_of_1970_has_none() -> None:
    """No usage or purchase means no days since the last activity, also where the kept window
    reaches back before the epoch (its first day is negative for events before 31 March 1970)."""
    at = dt.datetime(1970, 1, 5, 12, tzinfo=dt.UTC)
    early = ev("support.ticket", at=at, ticket_id="t1", status="open", sentiment=0.0)
    for eager in (True, False):
        adv = advance(CustomerState(early.customer_id), 0, [early], Cadence(), 0, 10**6, eager)
        assert adv.instants, "the close of the ticket's day is an instant"
        assert adv.instants[0].brief.days_since_last_activity is None
    state = apply_all(CustomerState(early.customer_id), [early])
    assert brief(state, 10 * DAY_S).days_since_last_activity is None
