"""Small builders for tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from tenure.events.envelope import Event, make_event
from tenure.runtime.clock import FixedClock

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def ev(
    event_type: str,
    customer: str = "c-1",
    *,
    at: dt.datetime | float = T0,
    event_id: str | None = None,
    **payload: Any,
) -> Event:
    """An event; `at` is a datetime or days after T0."""
    when = at if isinstance(at, dt.datetime) else T0 + dt.timedelta(days=at)
    eid = event_id or f"{customer}-{event_type}-{when.isoformat()}-{sorted(payload.items())}"
    return make_event(
        event_type,
        event_id=eid,
        customer_id=customer,
        occurred_at=when.isoformat(),
        payload=payload,
    )


def line(
    event_type: str,
    customer: str = "c-1",
    *,
    event_id: str = "e-1",
    at: str = "2026-03-01T10:00:00Z",
    **payload: Any,
) -> bytes:
    """One JSONL line."""
    return orjson.dumps(
        {
            "event_id": event_id,
            "type": event_type,
            "customer_id": customer,
            "occurred_at": at,
            "payload": payload,
        }
    )


def closed(events: Any) -> FixedClock:
    """A live clock a day and three hours after the newest of `events`: the watermark (the
    clock less the lateness) has then passed the close of its day, so every instant the events
    make is decided when they are run."""
    newest = max(e.occurred_at for e in events)
    return FixedClock(newest + dt.timedelta(days=1, hours=3))


def live_decisions(rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """What identifies each live decision (id, customer, instant, status, action, guardrail),
    in one order: for comparing two runs' decisions, from the store or `decisions list`."""
    keys = ("decision_id", "customer_id", "decided_at", "status", "action_id", "guardrail")
    return sorted(tuple(r[k] for k in keys) for r in rows if r["mode"] == "live")
