"""Personal data: kept only in its own table, newest value per field, and erased for good while
the audit chain and the ledger still verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from tenure.cli import app
from tenure.store.db import Store
from tests.fixtures.loyalty import CONTRACT

runner = CliRunner()
SECRETS = ("ann@example.com", "ann.old@example.com", "Ann Example", "+49 151 2345678")


def tenure(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout + result.stderr


def line(event_id: str, type_: str, day: int, **payload: object) -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "type": type_,
            "customer_id": "ann",
            "partner_id": "dealer-1",
            "occurred_at": f"2026-03-{day:02d}T10:00:00Z",
            "payload": payload,
        }
    )


def history(path: Path) -> Path:
    lines = [
        line("p1", "profile.updated", 2, name="Ann Example", email="ann.old@example.com"),
        line("p2", "profile.updated", 5, email="ann@example.com", phone="+49 151 2345678"),
        # Late, and older than p2: its email must not win.
        line("p0", "profile.updated", 1, email="ann.stale@example.com"),
        line("b1", "purchase", 3, amount=120.0, product_line="parts"),
        line("c1", "subscription.cancel_requested", 6),
        # Two days on: the watermark (the newest event time less the lateness) then passes the
        # close of the cancel request's day, so that day is decided in this run.
        line("u1", "usage", 8, minutes=12.0),
        # A malformed line that holds personal data: kept as a reject until the erasure.
        '{"event_id": "bad", "type": "profile.updated", "customer_id": "ann", '
        '"occurred_at": "2026-03-07T10:00:00Z", "payload": {"email": "ann@example.com", '
        '"phone": "nope"}}',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def everything(url: str) -> str:
    """Every row of every table, as text."""
    engine = sa.create_engine(url)
    texts = []
    with engine.connect() as conn:
        for table in sa.inspect(engine).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                texts.append(
                    " ".join(
                        v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in row
                    )
                )
    engine.dispose()
    return "\n".join(texts)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_erase_removes_personal_data_and_keeps_audit_and_ledger_verifying(
    backend, tmp_path, monkeypatch, request
):
    ws = tmp_path / "ws"
    (ws / "contracts").mkdir(parents=True)
    (ws / "contracts" / "acme.yaml").write_text(yaml.safe_dump(CONTRACT))
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("TENURE_DATABASE_URL", url)
    else:
        url = f"sqlite:///{ws / 'tenure.db'}"
    logs = tmp_path / "tenure.jsonl"
    monkeypatch.setenv("TENURE_LOG_FILE", str(logs))
    monkeypatch.setenv("TENURE_LOG_LEVEL", "debug")
    code, output = tenure("run", "-e", str(history(tmp_path / "h.jsonl")), "--workspace", str(ws))
    assert code == 0, output

    code, output = tenure("customers", "show", "ann", "--json", "--workspace", str(ws))
    personal = json.loads(output)["personal"]
    assert personal == {
        "name": "Ann Example",
        "email": "ann@example.com",
        "phone": "+49 151 2345678",
    }
    before = everything(url)
    # Clear values only in personal_data (and the raw rejected line), never in the event log or
    # the audit chain, which keep digests.
    store = Store(url)
    with store.reader() as conn:
        log = " ".join(
            str(p) for p in conn.execute(sa.text("SELECT payload FROM events")).scalars()
        )
        audit = " ".join(conn.execute(sa.text("SELECT body FROM audit")).scalars())
    store.close()
    assert "sha256:" in log
    assert not any(s in log or s in audit for s in SECRETS)
    assert "ann@example.com" in before

    code, output = tenure("customers", "erase", "ann", "--by", "dpo", "--workspace", str(ws))
    assert code == 0, output
    assert "email, name, phone" in output and "1 rejected line(s) blanked" in output
    after = everything(url)
    assert not any(s in after for s in SECRETS)
    if backend == "sqlite":
        # Not in free pages nor in the write-ahead log either.
        raw = b"".join(p.read_bytes() for p in ws.glob("tenure.db*"))
        assert not any(s.encode() in raw for s in SECRETS)
    code, output = tenure("audit", "verify", "--workspace", str(ws))
    assert code == 0, output
    code, output = tenure("ledger", "verify", "--workspace", str(ws))
    assert code == 0, output
    code, output = tenure("customers", "show", "ann", "--json", "--workspace", str(ws))
    view = json.loads(output)
    assert view["personal"] == {"name": None, "email": None, "phone": None}
    assert view["loyalty"]["posted"] > 0  # the ledger is untouched
    assert "customer.erased" in after
    # The logs never held them: every line masks personal values.
    written = logs.read_text()
    assert "decision made" in written and "ann" in written
    assert not any(s in written for s in SECRETS)
    # Erasing again is harmless; an unknown customer is a clear error.
    assert tenure("customers", "erase", "ann", "--by", "dpo", "--workspace", str(ws))[0] == 0
    code, output = tenure("customers", "erase", "nobody", "--by", "dpo", "--workspace", str(ws))
    assert code != 0 and "no customer 'nobody'" in output


def test_later_batches_update_per_field_and_a_late_value_never_wins(tmp_path):
    from tenure.config import resolve
    from tenure.events.parse import LineParser, RawLine
    from tenure.runtime.pipeline import Pipeline
    from tenure.services.policies import live_set
    from tenure.store.personal import personal

    store = Store(resolve(tmp_path / "ws").database_url)
    with store.reader() as conn:
        pipeline = Pipeline(store, live_set(conn))
    parser = LineParser(())

    def feed(n: int, customer: str, day: int, **values: str) -> None:
        raw = line(f"e{n}", "profile.updated", day, **values).replace('"ann"', f'"{customer}"')
        pipeline.run(iter([parser.parse(RawLine(1, raw.encode()))]), "test")

    feed(1, "a", 5, email="a@new.com", name="N")
    feed(2, "b", 5, email="b@new.com", name="N")
    feed(3, "b", 2, email="b.stale@example.com", phone="+49 1234567")  # older than b's values
    feed(4, "a", 9, email="a2@new.com")
    with store.reader() as conn:
        assert personal(conn, "a") == {"name": "N", "email": "a2@new.com", "phone": None}
        # The stale email loses; the phone b never had is taken.
        assert personal(conn, "b") == {"name": "N", "email": "b@new.com", "phone": "+49 1234567"}
    store.close()
