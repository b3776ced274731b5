"""Messages (issue "Messages" and "Recipients and consent at the edge"): templates per channel
rendered at send time for the customer's stored address, with a working unsubscribe link; a
customer without an address is a recorded skip; a template error is refused at validation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from tenure.api.app import create_app
from tenure.channels.adapters import ChannelSettings, Message
from tenure.channels.courier import Courier
from tenure.channels.messages import TemplateError, Templates, check_policy
from tenure.channels.unsubscribe import Unsubscribe, read, sign, unsubscribe_key
from tenure.cli import app
from tenure.config import resolve
from tenure.events.envelope import make_event
from tenure.journeys.activities import JourneyActivities
from tenure.journeys.inputs import ActInput, JourneyAbout, read_outbox
from tenure.journeys.library import JourneyLibrary, workspace_library
from tenure.journeys.machine import Deliver, simulate
from tenure.journeys.spec import JourneySpec
from tenure.policy.guardrails import GuardrailSettings
from tenure.policy.model import parse_policy
from tenure.runtime.clock import FixedClock
from tenure.runtime.pipeline import Pipeline
from tenure.runtime.worker import letters_for
from tenure.store import acts, repo
from tenure.store import schema as t
from tenure.store.db import Store
from tests.fixtures.mail import Mailbox, running_smtp
from tests.helpers import T0, closed, ev

runner = CliRunner()
GUARDRAILS = GuardrailSettings(control_share=0)
POLICY = parse_policy(
    {
        "id": "mail",
        "trigger": {
            "risk_at_least": 0.0,
            "on_events": ["subscription.cancel_requested"],
            "when": "event.type == 'subscription.cancel_requested'",
        },
        "actions": [
            {"id": "winback", "channel": "email", "cost": 1.0, "uplift": 0.5, "journey": "mail"}
        ],
    }
)
JOURNEY = """id: mail
steps:
  - {id: send, kind: send, template: winback, payload: {offer: COMEBACK-10, valid_days: 7}}
  - {id: sent, kind: exit, outcome: sent}
"""
TEMPLATES = {
    "winback.email.subject.txt": "{{ customer.name }}, your {{ customer.plan }} plan misses you",
    "winback.fr.email.subject.txt": "{{ customer.name }}, votre offre {{ decision.offer }}",
    "winback.email.txt": (
        "Hello {{ customer.name }},\n"
        "{{ decision.offer }} is yours until {{ decision.expires }}.\n"
        "Leave: {{ unsubscribe_url }}\n"
    ),
    "winback.email.html": (
        "<p>Hello {{ customer.name }},</p><p><b>{{ decision.offer }}</b></p>"
        '<a href="{{ unsubscribe_url }}">leave</a>'
    ),
}
ADDRESS = "ann@example.test"


def workspace(root: Path, box: Mailbox) -> Path:
    """A workspace whose email channel is the local SMTP server, with its journey and
    templates."""
    root.mkdir()
    (root / "tenure.yaml").write_text(
        "guardrails: {control_share: 0}\n"
        "channels:\n"
        f"  email: {{type: smtp, host: {box.host}, port: {box.port}, sender: keep@example.test,"
        ' unsubscribe_url: "http://testserver/v1/unsubscribe/{token}", max_attempts: 1}\n'
    )
    (root / "journeys").mkdir()
    (root / "journeys" / "mail.yaml").write_text(JOURNEY)
    (root / "templates").mkdir()
    for name, text in TEMPLATES.items():
        (root / "templates" / name).write_text(text)
    return root


def history(customer: str, **profile: str) -> list:
    """A paying customer who consented to marketing email and asks to cancel on day 30."""
    return [
        ev("profile.updated", customer, at=0, **profile),
        ev("consent.granted", customer, at=0, channel="email", purpose="marketing"),
        ev("subscription.started", customer, at=0, plan="pro", mrr=50.0),
        ev("purchase", customer, at=1, amount=80.0, order_id=f"{customer}-1"),
        ev("subscription.cancel_requested", customer, at=30, plan="pro", mrr=50.0),
    ]


def decide(store: Store, ws: Path, events: list) -> None:
    """Run the events through the pipeline until every instant they make is decided."""
    pipeline = Pipeline(
        store,
        POLICY,
        guardrails=GUARDRAILS,
        journeys=workspace_library(ws),
        clock=closed(events),
    )
    pipeline.run(iter(events), "test")


def run_journeys(store: Store, courier: Courier, clock: FixedClock) -> list[dict]:
    """Carry out the sends of every journey in the outbox, as the workflow would."""
    activities = JourneyActivities(store, courier, GUARDRAILS, clock=clock)
    with store.reader() as conn:
        rows = acts.pending_outbox(conn, 100)
    results = []
    for row in rows:
        start = read_outbox(row["kind"], row["payload"])
        spec = JourneySpec.model_validate(start.journey)
        inp = start.machine_input()
        _, commands = simulate(spec, inp, clock.now().timestamp())
        for command in commands:
            if isinstance(command, Deliver):
                results.append(activities.act(ActInput(JourneyAbout.of(inp), command)))
    return results


def live_decisions(store: Store, customer: str) -> list[dict]:
    with store.reader() as conn:
        query = select(t.decisions).where(t.decisions.c.customer_id == customer)
        rows = repo.rows(conn, query.order_by(t.decisions.c.decided_at))
    return [r for r in rows if r["mode"] == "live"]


def test_an_email_journey_arrives_rendered_at_the_stored_address_and_its_link_unsubscribes(
    tmp_path: Path,
) -> None:
    with running_smtp() as box:
        ws = workspace(tmp_path / "ws", box)
        settings = resolve(ws)
        store = Store(settings.database_url)
        try:
            events = history("c-ann", email=ADDRESS, name="Ann & Bo", plan="pro")
            decide(store, ws, events)
            (first,) = live_decisions(store, "c-ann")
            assert (first["status"], first["action_id"]) == ("action", "winback")
            clock = closed(events)
            courier = Courier(
                store, dict(settings.channels), ws / "outbox", clock=clock, letters=letters_for(ws)
            )
            assert run_journeys(store, courier, clock) == [{"status": "delivered", "error": None}]
            # Neither the outbox nor the delivery record holds the address: only the letter did.
            with store.reader() as conn:
                kept = str([repo.rows(conn, select(table)) for table in (t.outbox, t.deliveries)])
            assert "c-ann" in kept and ADDRESS not in kept
        finally:
            store.close()
    (got,) = box.received
    assert got.rcpt_tos == [ADDRESS] and got.mail_from == "keep@example.test"
    mail = got.parsed()
    assert mail["To"] == ADDRESS and mail["Subject"] == "Ann & Bo, your pro plan misses you"
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = mail.get_body(("html",)).get_content()
    expires = (clock.now() + dt.timedelta(days=7)).date().isoformat()
    assert text.startswith(f"Hello Ann & Bo,\nCOMEBACK-10 is yours until {expires}.\n")
    assert "<p>Hello Ann &amp; Bo,</p><p><b>COMEBACK-10</b></p>" in html  # autoescaped
    url = mail["List-Unsubscribe"].strip("<>")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"Leave: {url}" in text and f'href="{url}"' in html
    assert url.startswith("http://testserver/v1/unsubscribe/")

    # Following the link: the page asks (and changes nothing), the one-click POST revokes.
    with TestClient(create_app(settings, clock=clock)) as client:
        path = urlsplit(url).path
        page = client.get(path)
        assert page.status_code == 200 and '<form method="post"' in page.text
        assert "marketing messages by email" in page.text
        assert revocations(store_of(settings)) == []
        done = client.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert done.status_code == 200 and "no more marketing messages by email" in done.text
        forged = client.post(path + "x")
        assert forged.status_code == 404
        assert forged.headers["content-type"].startswith("application/problem+json")
    (revoked,) = revocations(store_of(settings))
    assert revoked["customer_id"] == "c-ann" and revoked["source"] == "unsubscribe"
    assert revoked["payload"] == {"channel": "email", "purpose": "marketing", "partner_id": None}

    # The next decision for the email channel is suppressed by consent.
    store = Store(settings.database_url)
    try:
        later = [ev("subscription.cancel_requested", "c-ann", at=50, plan="pro", mrr=50.0)]
        decide(store, ws, later)
        last = live_decisions(store, "c-ann")[-1]
    finally:
        store.close()
    assert last["decided_at"] > first["decided_at"]
    assert (last["status"], last["guardrail"]) == ("suppressed", "consent")
    assert "no marketing consent on email" in last["reason"]


def store_of(settings) -> Store:
    return Store(settings.database_url)


def revocations(store: Store) -> list[dict]:
    try:
        with store.reader() as conn:
            query = select(t.events).where(t.events.c.type == "consent.revoked")
            return repo.rows(conn, query)
    finally:
        store.close()


def test_a_customer_without_an_address_is_a_recorded_skip(tmp_path: Path) -> None:
    with running_smtp() as box:
        ws = workspace(tmp_path / "ws", box)
        settings = resolve(ws)
        store = Store(settings.database_url)
        try:
            decide(store, ws, history("c-none", plan="basic"))
            (decision,) = live_decisions(store, "c-none")
            clock = FixedClock(T0 + dt.timedelta(days=31))
            letters = letters_for(ws)
            courier = Courier(store, dict(settings.channels), ws / "outbox", letters=letters)
            assert run_journeys(store, courier, clock) == [
                {"status": "skipped", "error": "no email on file for the customer"}
            ]
            key = f"{decision['decision_id']}:send:1"
            with store.reader() as conn:
                row = acts.delivery(conn, key)
            assert (row["status"], row["attempts"]) == ("skipped", 0)
            assert row["last_error"] == "no email on file for the customer"
            # Settled: not retried, not a dead letter.
            message = Message(**row["payload"])
            assert courier.deliver(message).status == "skipped"
            assert courier.retry_dead() == [] and courier.release_held() == []
        finally:
            store.close()
    assert box.received == []


def test_a_template_error_is_refused_at_policy_validation(tmp_path: Path) -> None:
    with running_smtp() as box:
        ws = workspace(tmp_path / "ws", box)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(orjson.dumps(POLICY.model_dump(mode="json")).decode())
    ok = runner.invoke(app, ["policy", "validate", str(policy_file), "-w", str(ws)])
    assert ok.exit_code == 0, ok.stderr
    assert "templates: 2 rendered" in ok.stdout  # the default and the fr subject

    # An unknown variable: refused with the action, the step, the file, the line and the name.
    (ws / "templates" / "winback.email.txt").write_text("Hi\n{{ decision.ofer }}\n")
    bad = runner.invoke(app, ["policy", "validate", str(policy_file), "-w", str(ws)])
    assert bad.exit_code == 2
    assert "action 'winback'" in bad.stderr and "step 'send'" in bad.stderr
    assert "winback.email.txt: line 2" in bad.stderr and "ofer" in bad.stderr
    add = runner.invoke(app, ["policy", "add", str(policy_file), "--by", "ana", "-w", str(ws)])
    assert add.exit_code == 2 and "ofer" in add.stderr

    # A syntax error, and a part the channel needs that is missing.
    (ws / "templates" / "winback.email.txt").write_text("Hi {{ customer.name \n")
    with pytest.raises(TemplateError, match=r"winback.email.txt: line 1: unexpected"):
        check(ws)
    (ws / "templates" / "winback.email.txt").unlink()
    with pytest.raises(TemplateError, match=r"no winback.email.txt"):
        check(ws)
    # A locale variant is checked too.
    (ws / "templates" / "winback.email.txt").write_text("{{ customer.name }}")
    (ws / "templates" / "winback.fr.email.subject.txt").write_text("{{ customer.nom }}")
    with pytest.raises(TemplateError, match=r"winback.fr.email.subject.txt: line 1: .*nom"):
        check(ws)


def check(ws: Path) -> int:
    settings = resolve(ws)
    return check_policy(POLICY, workspace_library(ws), Templates.of(ws), settings.channels)


def test_the_built_in_templates_cover_the_built_in_policy_and_journeys() -> None:
    from tenure.policy.model import default_policy

    channels = {
        "email": ChannelSettings(type="smtp"),
        "sms": ChannelSettings(type="sms", url="http://127.0.0.1:9/sms"),
        "push": ChannelSettings(type="sms", url="http://127.0.0.1:9/sms"),
    }
    with pytest.raises(TemplateError, match=r"template 'action' on push: no action.push.txt"):
        check_policy(default_policy(), JourneyLibrary(), Templates(), channels)
    del channels["push"]
    # The email action's `action` template, and the sms journey's offer and reminder.
    assert check_policy(default_policy(), JourneyLibrary(), Templates(), channels) == 3
    save = parse_policy(
        {
            "id": "save",
            "trigger": {"risk_at_least": 0.5},
            "actions": [
                {"id": f"call-{c}", "channel": c, "cost": 1, "uplift": 0.1, "journey": "save-desk"}
                for c in ("email", "sms")
            ],
        }
    )
    assert check_policy(save, JourneyLibrary(), Templates(), channels) == 2


def test_preview_renders_for_the_customer_locale_and_names_each_file(tmp_path: Path) -> None:
    with running_smtp() as box:
        ws = workspace(tmp_path / "ws", box)
    store = Store(resolve(ws).database_url)
    try:
        profile = make_event(
            "profile.updated",
            event_id="p-1",
            customer_id="c-fr",
            occurred_at=T0.isoformat(),
            payload={"email": "zoe@example.test", "name": "Zoé"},
            __extra__={"locale": "fr_ca"},
        )
        decide(store, ws, [profile])
    finally:
        store.close()
    shown = runner.invoke(
        app, ["templates", "preview", "winback", "--customer", "c-fr", "-w", str(ws), "--json"]
    )
    assert shown.exit_code == 0, shown.stderr
    got = orjson.loads(shown.stdout)
    assert (got["locale"], got["to"]) == ("fr-CA", "z***@example.test")
    parts = got["parts"]
    # fr-CA has no file of its own, fr has a subject; the rest falls back to the default.
    assert parts["subject"] == {
        "file": str(ws / "templates" / "winback.fr.email.subject.txt"),
        "text": "Zoé, votre offre COMEBACK-10",  # the payload of the step that sends it
    }
    assert parts["text"]["file"] == str(ws / "templates" / "winback.email.txt")
    assert parts["text"]["text"].startswith("Hello Zoé,\nCOMEBACK-10 is yours until 20")
    assert parts["html"]["file"].endswith("winback.email.html")
    shown = runner.invoke(app, ["templates", "preview", "offer", "--customer=c-fr", "-w", str(ws)])
    assert shown.exit_code == 0 and "offer.email.subject.txt" in shown.stdout


def test_unsubscribe_tokens_are_signed_by_the_workspace_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("TENURE_UNSUBSCRIBE_KEY", raising=False)
    key = unsubscribe_key(tmp_path / "ws")
    assert unsubscribe_key(tmp_path / "ws") == key  # made once, then read
    assert (tmp_path / "ws" / "unsubscribe.key").stat().st_mode & 0o077 == 0
    what = Unsubscribe("c-1", "email", "marketing")
    token = sign(key, what)
    assert read(key, token) == what
    assert read(b"another key of the workspace", token) is None
    mac = token.partition(".")[2]
    other = sign(key, Unsubscribe("c-2", "email", "marketing")).partition(".")[0]
    assert read(key, f"{other}.{mac}") is None  # another customer under this token's MAC
    assert read(key, "not-a-token") is None and read(key, "a.b.c") is None
    monkeypatch.setenv("TENURE_UNSUBSCRIBE_KEY", "a shared key for every worker")
    assert unsubscribe_key(tmp_path / "elsewhere") == b"a shared key for every worker"


def test_an_sms_goes_to_the_stored_phone_through_the_gateway(tmp_path: Path) -> None:
    from tenure.store import personal
    from tests.receiver import running_receiver

    store = Store(f"sqlite:///{tmp_path / 'tenure.db'}")
    try:
        with store.transaction() as conn:
            personal.keep(conn, [ev("profile.updated", "c-sms", phone="+44 7700 900123")])
        with running_receiver() as rx:
            settings = {"sms": ChannelSettings(type="sms", url=rx.url, secret="s3cret")}
            courier = Courier(store, settings, tmp_path, letters=letters_for(tmp_path / "ws"))
            message = Message("d1:send:1", "d1", "c-sms", "sms", "offer", {"offer": "X-1"})
            assert courier.deliver(message).status == "delivered"
            body = rx.accepted()[0]["body"]
    finally:
        store.close()
    assert body["to"] == "+44 7700 900123" and body["idempotency_key"] == "d1:send:1"
    assert body["text"].startswith("An offer for you: X-1. Stop: http://127.0.0.1:8000/v1/unsub")


def test_the_recipient_setting_is_gone_with_a_reason() -> None:
    with pytest.raises(ValueError, match="personal data"):
        ChannelSettings.model_validate({"type": "smtp", "recipient": "{customer_id}@x.test"})
