"""Token lifecycle: expiry, listing (never the secret), revocation, on the command line, over
HTTP and in the store (SQLite and PostgreSQL), and the migration that brings it to old stores."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tenure.api import auth
from tenure.api.app import create_app
from tenure.cli import app as cli
from tenure.config import resolve
from tenure.errors import InputError
from tenure.store import schema as t
from tenure.store.db import MIGRATIONS, Store, make_engine

NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
runner = CliRunner()


def tenure(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_lifetime_is_a_count_and_a_unit():
    assert auth.duration("30d") == dt.timedelta(days=30)
    assert auth.duration("90m") == dt.timedelta(minutes=90)
    assert auth.duration("2w") == dt.timedelta(weeks=2)
    for bad in ("", "30", "d", "0d", "-1d", "1.5h", "30 days", "99999w", "999999d"):
        with pytest.raises(InputError):
            auth.duration(bad)


def test_tokens_expire_are_listed_without_secrets_and_revoke_in_the_store(store_url):
    store = Store(store_url)
    with store.transaction() as conn:
        forever, token = auth.create_token(conn, "auditor", None, "ann", NOW)
        brief, short = auth.create_token(
            conn, "partner", "dealer-1", "", NOW, dt.timedelta(hours=1)
        )
    with store.reader() as conn:
        assert auth.caller(conn, short, NOW + dt.timedelta(minutes=59)).token_id == brief
        assert auth.caller(conn, short, NOW + dt.timedelta(hours=1)) is None
        assert auth.caller(conn, token, NOW + dt.timedelta(days=3650)).name == "ann"
        listed = sorted(auth.list_tokens(conn), key=lambda x: x["role"])  # both made at NOW
    assert [(x["token_id"], x["name"], x["role"], x["partner"]) for x in listed] == [
        (forever, "ann", "auditor", None),
        (brief, None, "partner", "dealer-1"),
    ]
    assert listed[1]["expires_at"] == NOW + dt.timedelta(hours=1)
    assert listed[0]["created_at"] == NOW and listed[0]["revoked_at"] is None
    assert not [x for x in listed for v in x.values() if isinstance(v, str) and "tnr_" in v]
    later = NOW + dt.timedelta(minutes=5)
    with store.transaction() as conn:
        session, _ = auth.start_session(conn, token, NOW)
        assert auth.revoke_token(conn, forever, later)["revoked_at"] == later
        # A second revocation keeps the first time; an unknown id is None.
        assert auth.revoke_token(conn, forever, later + NOW.resolution)["revoked_at"] == later
        assert auth.revoke_token(conn, "tok-none", later) is None
    with store.reader() as conn:
        assert auth.caller(conn, token, later) is None
        assert auth.session_caller(conn, session, later) is None
    store.close()


def test_sessions_end_when_idle_too_long_too_old_or_ended(store_url):
    store = Store(store_url)
    with store.transaction() as conn:
        _, token = auth.create_token(conn, "operator", None, "olga", NOW)
        first, who = auth.start_session(conn, token, NOW)
        second, _ = auth.start_session(conn, token, NOW)
    assert who.name == "olga" and first != second
    idle, longest = auth.SESSION_IDLE, auth.SESSION_LONGEST
    with store.reader() as conn:
        assert auth.session_caller(conn, first, NOW + idle - NOW.resolution)[0] == who
        assert auth.session_caller(conn, first, NOW + idle) is None
        assert auth.session_caller(conn, "not-a-session", NOW) is None
    # Used every 20 minutes, a session lives until it is 12 hours old, then no longer.
    at = NOW
    while at + dt.timedelta(minutes=20) < NOW + longest:
        at += dt.timedelta(minutes=20)
        with store.transaction() as conn:
            found, touch = auth.session_caller(conn, first, at)
            assert found == who and touch
            auth.touch_session(conn, first, at)
    with store.transaction() as conn:
        assert auth.session_caller(conn, first, at + auth.SESSION_TOUCH / 2) == (who, False)
        assert auth.session_caller(conn, first, NOW + longest) is None
        auth.end_session(conn, second, NOW)
        assert auth.session_caller(conn, second, NOW) is None
    store.close()


def test_an_expired_token_starts_no_session_and_ends_its_sessions(store_url):
    store = Store(store_url)
    with store.transaction() as conn:
        _, token = auth.create_token(conn, "operator", None, "", NOW, dt.timedelta(minutes=10))
        session, _ = auth.start_session(conn, token, NOW)
    with store.transaction() as conn:
        assert auth.session_caller(conn, session, NOW + dt.timedelta(minutes=9)) is not None
        assert auth.session_caller(conn, session, NOW + dt.timedelta(minutes=10)) is None
        assert auth.start_session(conn, token, NOW + dt.timedelta(minutes=10)) is None
    store.close()


def _alembic(conn: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def test_the_migration_keeps_existing_tokens_and_goes_both_ways(store_url):
    engine = make_engine(store_url)
    with engine.begin() as conn:
        command.upgrade(_alembic(conn), "0009")
    with engine.begin() as conn:
        # Only the columns revision 0009 has.
        conn.execute(
            t.api_tokens.insert().values(
                token_hash=auth.digest("tnr_old"),
                token_id="tok-old",
                role="auditor",
                label="old",
                created_at=NOW,
            )
        )
    store = Store(store_url)  # migrates to the newest revision
    with store.transaction() as conn:
        assert auth.caller(conn, "tnr_old", NOW).token_id == "tok-old"
        assert auth.list_tokens(conn)[0]["expires_at"] is None
        assert auth.start_session(conn, "tnr_old", NOW) is not None
    store.close()
    with engine.begin() as conn:
        command.downgrade(_alembic(conn), "0009")
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        assert "dashboard_sessions" not in inspector.get_table_names()
        assert "expires_at" not in {c["name"] for c in inspector.get_columns("api_tokens")}
        assert conn.execute(sa.text("SELECT token_id FROM api_tokens")).scalar_one() == "tok-old"
    with engine.begin() as conn:
        command.upgrade(_alembic(conn), "head")
    engine.dispose()


def test_the_command_line_creates_with_expiry_lists_and_revokes(tmp_path):
    ws = str(tmp_path / "ws")
    code, token, err = tenure(
        "tokens", "create", "--role", "auditor", "--name", "ann", "--expires-in", "30d", "-w", ws
    )
    assert code == 0 and "expires" in err
    token_id = err.split()[1]
    code, _, err = tenure("tokens", "create", "--role", "auditor", "--expires-in", "soon", "-w", ws)
    assert code == 2 and "--expires-in" in err
    code, out, _ = tenure("tokens", "list", "--json", "-w", ws)
    (listed,) = json.loads(out)
    assert listed["token_id"] == token_id and listed["name"] == "ann"
    expires = dt.datetime.fromisoformat(listed["expires_at"])
    created = dt.datetime.fromisoformat(listed["created_at"])
    assert expires - created == dt.timedelta(days=30) and listed["revoked_at"] is None
    code, table, _ = tenure("tokens", "list", "-w", ws)
    assert code == 0 and "revoked" in table and "auditor" in table and "ann" in table
    assert token.strip() not in out + table
    code, out, _ = tenure("tokens", "revoke", token_id, "-w", ws)
    assert code == 0 and f"revoked {token_id}" in out
    code, _, err = tenure("tokens", "revoke", "tok-none", "-w", ws)
    assert code == 2 and "no token 'tok-none'" in err
    store = Store(resolve(tmp_path / "ws").database_url)
    with store.reader() as conn:
        assert auth.caller(conn, token.strip()) is None
    store.close()


@pytest.fixture
def api(tmp_path):
    settings = resolve(tmp_path / "ws")
    store = Store(settings.database_url)
    with store.transaction() as conn:
        admin = auth.create_token(conn, "admin", None, "root", dt.datetime.now(dt.UTC))[1]
        operator = auth.create_token(conn, "operator", None, "olga", dt.datetime.now(dt.UTC))
    store.close()
    with TestClient(create_app(settings)) as client:
        yield client, admin, operator


def test_admins_list_create_and_revoke_tokens_over_http_and_revoked_is_out_at_once(api):
    client, admin, (operator_id, operator) = api
    assert client.get("/v1/tokens", headers=bearer(operator)).status_code == 403
    made = client.post(
        "/v1/tokens",
        json={"role": "partner", "partner": "dealer-1", "name": "portal", "expires_in": "12h"},
        headers=bearer(admin),
    )
    assert made.status_code == 201, made.text
    partner = made.json()
    created = dt.datetime.fromisoformat(partner["expires_at"]) - dt.timedelta(hours=12)
    assert abs(created - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    listed = client.get("/v1/tokens", headers=bearer(admin)).json()
    assert [x["name"] for x in listed] == ["root", "olga", "portal"]
    assert partner["token"] not in json.dumps(listed)
    assert client.get("/v1/decisions", headers=bearer(operator)).status_code == 200
    gone = client.delete(f"/v1/tokens/{operator_id}", headers=bearer(admin))
    assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
    refused = client.get("/v1/decisions", headers=bearer(operator))
    assert refused.status_code == 401 and refused.json()["detail"].startswith("unknown or revoked")
    assert client.delete("/v1/tokens/tok-none", headers=bearer(admin)).status_code == 404
    bad = client.post(
        "/v1/tokens", json={"role": "auditor", "expires_in": "forever"}, headers=bearer(admin)
    )
    assert bad.status_code == 422 and "--expires-in" in bad.json()["detail"]


def test_an_expired_token_is_refused_by_the_api(api):
    client, admin, _ = api
    made = client.post(
        "/v1/tokens", json={"role": "auditor", "expires_in": "1m"}, headers=bearer(admin)
    ).json()
    assert client.get("/v1/decisions", headers=bearer(made["token"])).status_code == 200
    # The minute passes (its expiry moved back rather than the test waiting for it).
    with client.app.state.store.transaction() as conn:
        conn.execute(
            t.api_tokens.update()
            .where(t.api_tokens.c.token_id == made["token_id"])
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    refused = client.get("/v1/decisions", headers=bearer(made["token"]))
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
