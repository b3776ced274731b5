"""The pipeline's stages and the act layer's typed messages, each on its own."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tenure.events.parse import Reject
from tenure.journeys.inputs import (
    EventObserved,
    HumanTask,
    JourneySignal,
    JourneyStart,
    TaskResolved,
    UnknownOutboxKind,
    outbox_kind,
    outbox_payload,
    read_outbox,
)
from tenure.policy.model import default_policy
from tenure.runtime.pipeline import Pipeline
from tenure.store.acts import journey_row
from tenure.store.db import Store
from tests.helpers import T0, ev

START = JourneyStart(
    decision_id="d-1",
    customer_id="c-1",
    action_id="offer",
    channel="email",
    decided_at=T0.isoformat(),
    journey={"id": "offer-reminder-expiry", "steps": []},
    journey_hash="h",
    journey_horizon_s=7 * 86_400.0,
    listens=["channel.redeemed"],
    cost=4.0,
    deliver_at=(T0 + dt.timedelta(hours=9)).isoformat(),
    correlation_id="e-9",
)


def test_sort_tells_new_events_from_duplicates_and_rejects(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    pipeline = Pipeline(store, default_policy())
    stored = ev("usage", "c-1", at=0, event_id="e-old")
    quiet = ev("usage", "c-3", at=0, event_id="e-quiet")
    pipeline.run(iter([stored, quiet]), "first")
    reject = Reject(3, b"{}", "type", "type: unknown event type 'x'")
    batch = [
        ev("usage", "c-2", at=1, event_id="e-1"),
        ev("usage", "c-2", at=1, event_id="e-1"),  # twice in the batch
        stored,  # already in the log
        reject,
        ev("usage", "c-1", at=2, event_id="e-2"),
    ]
    with store.reader() as conn:
        window, due = pipeline._window(conn, batch)
        got = pipeline._sort(conn, batch, due)
    # The batch moves the watermark past the close of day 0, where c-1 and c-3 are due (their
    # events of that day were still waiting for it): c-3 has no event in the batch but is
    # locked with the customers that do, since the batch decides its instant too.
    close = dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp()  # T0's day ends
    assert window.floor < close <= window.until
    assert due == ["c-1", "c-3"]
    assert got.locked == ["c-1", "c-2", "c-3"]
    assert [e.event_id for e in got.events] == ["e-1", "e-2"]
    assert sorted(got.by_customer) == ["c-1", "c-2"]
    assert got.rejects == [reject]
    assert got.duplicates == 2
    assert len(batch) == len(got.events) + got.duplicates + len(got.rejects)
    store.close()


def test_the_journey_row_is_built_from_the_decisions_message() -> None:
    at = dt.datetime.fromisoformat(START.decided_at)
    row = journey_row(START, at)
    assert row["decision_id"] == "d-1" and row["journey_id"] == "offer-reminder-expiry"
    assert row["status"] == "pending" and row["listens"] == ["channel.redeemed"]
    assert row["ends_by"] == at + dt.timedelta(days=7)


@pytest.mark.parametrize(
    "message",
    [
        START,
        HumanTask("d-2", "c-1", "retention", "risk 0.91, value 1,200", T0.isoformat(), "e-3"),
        JourneySignal(EventObserved(T0.timestamp(), "channel.redeemed", "e-4"), "e-4"),
        JourneySignal(TaskResolved(T0.timestamp(), "d-2:human:1", "saved", "ana")),
    ],
)
def test_an_outbox_message_reads_back_as_written(message: object) -> None:
    kind = outbox_kind(message)  # type: ignore[arg-type]
    assert read_outbox(kind, outbox_payload(message)) == message  # type: ignore[arg-type]


def test_a_payload_from_before_a_field_was_added_still_reads() -> None:
    payload = outbox_payload(START)
    del payload["trace"], payload["activity_heartbeat_s"]
    assert read_outbox("journey.start", payload) == START


def test_the_machine_input_reads_the_deferred_delivery_as_an_instant() -> None:
    inp = START.machine_input()
    assert inp.deliver_at == (T0 + dt.timedelta(hours=9)).timestamp()
    assert inp.correlation_id == "e-9"


def test_an_unknown_outbox_kind_is_refused() -> None:
    with pytest.raises(UnknownOutboxKind, match="mystery"):
        read_outbox("mystery", {})
