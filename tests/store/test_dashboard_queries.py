"""The dashboard's reads, on SQLite and PostgreSQL: prefix search, a customer's timeline, counts
per day (UTC days, empty days included)."""

from __future__ import annotations

import datetime as dt

from tenure.policy.model import default_policy
from tenure.runtime.pipeline import Pipeline
from tenure.store import queries
from tenure.store.db import Store
from tests.helpers import T0, ev

IDS = ["a%1", "a_1", "ab-1", "ab-2", "abc", "b-1"]


def test_prefix_search_timeline_and_counts_per_day(store_url: str) -> None:
    store = Store(store_url)
    events = [ev("purchase", c, at=float(i), amount=10.0) for i, c in enumerate(IDS)]
    # Two events of one customer on the same UTC day, one just before midnight.
    late = T0.replace(hour=23, minute=59)
    events.append(ev("usage", "abc", at=late + dt.timedelta(days=4), minutes=3.0))
    Pipeline(store, default_policy()).run(iter(events), "t")
    with store.reader() as conn:
        assert queries.customers_by_prefix(conn, "ab") == ["ab-1", "ab-2", "abc"]
        assert queries.customers_by_prefix(conn, "ab", limit=2) == ["ab-1", "ab-2"]
        # % and _ are characters of an id, not wildcards.
        assert queries.customers_by_prefix(conn, "a%") == ["a%1"]
        assert queries.customers_by_prefix(conn, "a_") == ["a_1"]
        assert queries.customers_by_prefix(conn, "z") == []
        assert len(queries.customers_by_prefix(conn, "")) == len(IDS)
        timeline = queries.customer_events(conn, "abc")
        assert [e["type"] for e in timeline] == ["usage", "purchase"]
        days = queries.per_day(conn, "events", days=7)
    store.close()
    assert len(days) == 7 and days[-1][0] == f"{T0 + dt.timedelta(days=5):%Y-%m-%d}"
    by_day = dict(days)
    assert by_day[f"{T0 + dt.timedelta(days=4):%Y-%m-%d}"] == 2  # abc's purchase and usage
    assert by_day[f"{T0:%Y-%m-%d}"] == 1 and sum(by_day.values()) == len(events)
