"""Personal data never reaches a log line in clear: not from a log call, an event or an error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tenure.channels.adapters import Message, Permanent
from tenure.channels.courier import Courier
from tenure.events.personal import id_of
from tenure.observe.logs import get_logger, scrub
from tenure.runtime.pipeline import Pipeline
from tenure.store.db import Store
from tests.fixtures.journeys import GUARDRAILS, POLICY, history
from tests.helpers import closed

EMAIL = "ann.smith@example.com"
PHONE = "+44 20 7946 0958"
NAME = "Ann Smith"
CLEAR = (EMAIL, PHONE, NAME, "7946 0958", "ann.smith")


def digests(text: str, kind: str) -> list[str]:
    return re.findall(rf"<{kind}:[0-9a-f]{{10}}>", text)


def test_sensitive_keys_and_addresses_in_text_are_digested(logs) -> None:
    log = get_logger("tests.masking")
    log.info(
        f"customer wrote from {EMAIL} and asked to be called on {PHONE}",
        email=EMAIL,
        customer={"name": NAME, "contact": {"phone": PHONE, "work_email": EMAIL}},
        notes=[f"mail {EMAIL}", {"name": NAME}],
        amount="59.90",
        when="2026-03-01T10:00:00+01:00",
        day="2026-03-01 10:00",
    )
    assert not any(clear in logs.text for clear in CLEAR)
    (line,) = logs.lines(logger="tests.masking")
    # Equal values give equal digests: lines about one person still match up.
    assert line["email"] == line["customer"]["contact"]["work_email"]
    assert line["email"] in line["event"] and line["email"] in line["notes"][0]
    assert line["customer"]["name"] == line["notes"][1]["name"] != line["email"]
    assert len(set(digests(logs.text, "phone"))) == 1
    # What only looks like a number is left alone: amounts, dates, times.
    assert (line["amount"], line["when"], line["day"]) == (
        "59.90",
        "2026-03-01T10:00:00+01:00",
        "2026-03-01 10:00",
    )


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("call +1 (555) 123-4567 now", True),
        ("call 0044 20 7946 0958", True),
        ("mobile 07700900123", True),
        ("a.b+tag@mail.example.co.uk wrote", True),
        ("d-1466feb3a4cad5a67712c626:send-offer:1", False),
        ("risk 0.8123 over 30 days, cost 4.0", False),
        ("2026-03-31T12:00:00+00:00", False),
        ("order c-1-10 of 2026-03-11", False),
    ],
)
def test_scrub_finds_contacts_and_leaves_ids_and_numbers(text: str, masked: bool) -> None:
    assert (scrub(text) != text) is masked


def test_events_and_delivery_errors_leave_no_clear_contact(tmp_path: Path, logs, monkeypatch):
    """A customer id that is an email address, decided on and sent to by a channel whose error
    names the recipient (as SMTP's refusal does): every line is masked."""
    store = Store(f"sqlite:///{tmp_path / 'tenure.db'}")
    try:
        events = history(EMAIL)
        Pipeline(store, POLICY, guardrails=GUARDRAILS, clock=closed(events)).run(
            iter(events), "test"
        )
        decided = logs.lines(event="decision made")
        assert decided and decided[0]["status"] == "action"

        class Refusing:
            def send(self, message: Message) -> None:
                raise Permanent(f"recipient refused: {{'{EMAIL}': (550, b'{NAME} unknown')}}")

        monkeypatch.setattr("tenure.channels.courier.make_channel", lambda *_: Refusing())
        courier = Courier(store, {}, tmp_path / "outbox")
        message = Message("k:send:1", decided[0]["decision_id"], EMAIL, "email", "offer")
        assert courier.deliver(message).status == "dead"
    finally:
        store.close()
    (dead,) = logs.lines(event="delivery dead-lettered")
    assert dead["error"].startswith("recipient refused: {'<email:")
    accepted = logs.lines(event="event accepted")
    assert len(accepted) == len(history(EMAIL))
    # An email id is kept as its digest from ingest on, so every line names the same id.
    (customer,) = {x["customer_id"] for x in [*accepted, *decided]}
    assert customer == id_of(EMAIL)
    assert EMAIL not in logs.text and "ann.smith" not in logs.text


def test_a_digest_that_happens_to_be_all_digits_is_not_masked_again() -> None:
    from tenure.observe.logs import scrub

    # About one process key in a hundred digests a given address to ten decimal digits; the
    # phone pattern must leave such a digest alone (it once made this suite flaky).
    assert scrub("wrote from <email:1353973412> today") == "wrote from <email:1353973412> today"
    masked = scrub("<email:1353973412> call +44 20 7946 0958")
    assert masked.startswith("<email:1353973412> call <phone:")
