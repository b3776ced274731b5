"""Delivery through the courier: once per key, retries, dead letters, circuit, rate limits."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from pathlib import Path

import orjson
import pytest

from tenure.channels.adapters import ChannelSettings, Message, verify
from tenure.channels.courier import SEND_LEASE_S, Courier
from tenure.runtime.worker import letters_for
from tenure.store import acts, personal
from tenure.store.db import Store
from tests.fixtures.mail import running_smtp
from tests.helpers import ev
from tests.receiver import running_receiver


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start
        self.slept: list[float] = []

    def observe(self, event_time: dt.datetime) -> None:
        """Ignored: the test moves the clock itself."""

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.t, dt.UTC)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'tenure.db'}")
    yield s
    s.close()


def msg(i: int, channel: str = "hook") -> Message:
    return Message(f"d{i}:send:1", f"d{i}", f"c{i}", channel, "offer", {"offer": "X"})


def courier(store: Store, tmp_path: Path, clock: FakeClock, **hook: object) -> Courier:
    settings = {
        "hook": ChannelSettings(type="webhook", secret="s3cret", backoff_s=1, jitter_s=0.5, **hook)
    }
    return Courier(store, settings, tmp_path / "outbox", clock=clock, sleep=clock.sleep)


def test_receiver_failing_three_times_then_recovering_gets_exactly_one_delivery(store, tmp_path):
    clock = FakeClock()
    with running_receiver() as rx:
        c = courier(store, tmp_path, clock, url="http://placeholder")
        c.settings["hook"] = c.settings["hook"].model_copy(update={"url": rx.url})
        rx.failures_left = 3
        receipt = c.deliver(msg(1))
        assert receipt.status == "delivered" and receipt.attempts == 4
        assert len(rx.requests) == 4 and rx.keys() == ["d1:send:1"]
        # Exponential backoff with jitter between the attempts: about 1, 2, 4 seconds.
        assert len(clock.slept) == 3
        assert all(lo <= s <= lo + 0.5 for s, lo in zip(clock.slept, [1, 2, 4], strict=True))
        # The body is signed with the channel's secret, with the time it was sent.
        req = rx.accepted()[0]
        header = req["headers"]["X-Tenure-Signature"]
        t = int(header.split(",")[0].removeprefix("t="))
        mac = hmac.new(b"s3cret", b"%d." % t + req["raw"], hashlib.sha256).hexdigest()
        assert header == f"t={t},default={mac}"
        assert verify(header, req["raw"], {"default": "s3cret"}, now=time.time())
        # Delivering the same key again sends nothing.
        assert c.deliver(msg(1)).status == "duplicate"
        assert len(rx.requests) == 4
    with store.reader() as conn:
        assert acts.channel_states(conn)[0]["circuit"] == "closed"


def test_receiver_that_never_recovers_gives_one_dead_letter_an_open_circuit_and_holds(
    store, tmp_path
):
    clock = FakeClock()
    with running_receiver() as rx:
        rx.always_fail = True
        c = courier(store, tmp_path, clock, url=rx.url, open_for_s=60)
        assert c.deliver(msg(1)).status == "dead"
        assert len(rx.requests) == 4
        with store.reader() as conn:
            assert [d["key"] for d in acts.deliveries(conn, ["dead"])] == ["d1:send:1"]
            assert acts.channel_states(conn)[0]["circuit"] == "open"
        # Later sends are held, not attempted and not lost.
        assert [c.deliver(msg(i)).status for i in (2, 3)] == ["held", "held"]
        assert len(rx.requests) == 4
        assert c.release_held() == []  # still open
        # The receiver recovers; once the open period passes the held messages go out in order.
        rx.always_fail = False
        clock.t += 61
        released = c.release_held()
        assert [r.status for r in released] == ["delivered", "delivered"]
        assert rx.keys() == ["d2:send:1", "d3:send:1"]
        # And the dead letter goes out when an operator retries it.
        assert [r.status for r in c.retry_dead()] == ["delivered"]
        assert rx.keys() == ["d2:send:1", "d3:send:1", "d1:send:1"]
    with store.reader() as conn:
        assert acts.deliveries(conn, ["dead", "held"]) == []
        assert acts.channel_states(conn)[0]["circuit"] == "closed"


def test_unreachable_receiver_is_retried_then_dead_lettered(store, tmp_path):
    clock = FakeClock()
    c = courier(store, tmp_path, clock, url="http://127.0.0.1:9/unreachable", max_attempts=2)
    receipt = c.deliver(msg(1))
    assert receipt.status == "dead" and receipt.attempts == 2 and "ConnectError" in receipt.error


def test_rate_limit_waits_for_the_next_minute(store, tmp_path):
    clock = FakeClock(start=1_800_000_000.0 - 1_800_000_000.0 % 60)
    c = Courier(
        store,
        {"sms": ChannelSettings(rate_per_minute=2)},
        tmp_path / "outbox",
        clock=clock,
        sleep=clock.sleep,
    )
    for i in range(5):
        assert c.deliver(msg(i, "sms")).status == "delivered"
    assert len(clock.slept) == 2 and clock.t - 1_800_000_000.0 + 1_800_000_000.0 % 60 >= 120
    lines = (tmp_path / "outbox" / "sms.jsonl").read_bytes().splitlines()
    assert [orjson.loads(x)["idempotency_key"] for x in lines] == [f"d{i}:send:1" for i in range(5)]


def test_smtp_delivery_carries_the_idempotency_key(store, tmp_path):
    with store.transaction() as conn:  # the address is the personal-data table's, never the id's
        personal.keep(conn, [ev("profile.updated", "c7", email="seven@example.test")])
    with running_smtp() as box:
        settings = {"email": ChannelSettings(type="smtp", host=box.host, port=box.port)}
        c = Courier(store, settings, tmp_path, letters=letters_for(tmp_path / "ws"))
        assert c.deliver(msg(7, "email")).status == "delivered"
        assert c.deliver(msg(7, "email")).status == "duplicate"
    (got,) = box.received
    assert got.rcpt_tos == ["seven@example.test"]
    email = got.parsed()
    assert email["Idempotency-Key"] == "d7:send:1" and email["To"] == "seven@example.test"


def test_crm_channel_posts_a_ticket_shaped_body(store, tmp_path):
    with running_receiver() as rx:
        settings = {"crm": ChannelSettings(type="crm", url=rx.url)}
        c = Courier(store, settings, tmp_path)
        ticket = Message(
            "d9:ticket:1",
            "d9",
            "c9",
            "crm",
            "ticket",
            {"queue": "save", "subject": "call back"},
            kind="ticket",
        )
        assert c.deliver(ticket).status == "delivered"
        body = rx.accepted()[0]["body"]
    assert body == {
        "idempotency_key": "d9:ticket:1",
        "customer_id": "c9",
        "queue": "save",
        "subject": "call back",
        "decision_id": "d9",
    }


def test_a_message_another_sender_holds_is_not_sent_twice(store, tmp_path):
    clock = FakeClock()
    with running_receiver() as rx:
        c = courier(store, tmp_path, clock, url=rx.url)
        at = dt.datetime.fromtimestamp(clock.t, dt.UTC)
        with store.transaction() as conn:  # a worker claimed it and is sending right now
            acts.claim_delivery(
                conn,
                {
                    "key": "d1:send:1",
                    "decision_id": "d1",
                    "customer_id": "c1",
                    "kind": "deliver",
                    "channel": "hook",
                    "status": "sending",
                    "attempts": 0,
                    "payload": {},
                    "created_at": at,
                    "updated_at": at,
                },
            )
        assert c.deliver(msg(1)).status == "in_flight"
        assert rx.requests == []
        clock.t += SEND_LEASE_S + 1  # that sender died: after its lease the message goes out
        assert c.deliver(msg(1)).status == "delivered"
        assert len(rx.requests) == 1
