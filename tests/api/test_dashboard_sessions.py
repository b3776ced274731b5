"""Dashboard sessions: the cookie holds an opaque session id (never the API token), a new one at
every sign-in; sessions end at sign-out, on revocation or expiry of their token, after 30 idle
minutes or 12 hours; cookies are Secure over https; the sign-in form is CSRF-protected."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenure.api.app import create_app
from tenure.api.auth import create_token, digest
from tenure.api.dashboard import COOKIE
from tenure.api.dashboard.common import LOGIN_COOKIE
from tenure.config import resolve
from tenure.store import schema as t
from tenure.store.db import Store


@pytest.fixture
def dashboard(tmp_path):
    settings = resolve(tmp_path / "ws")
    store = Store(settings.database_url)
    now = dt.datetime.now(dt.UTC)
    with store.transaction() as conn:
        admin = create_token(conn, "admin", None, "root", now)[1]
        operator_id, operator = create_token(conn, "operator", None, "olga", now)
    store.close()
    app = create_app(settings)
    with TestClient(app) as client:
        yield client, app, {"admin": admin, "operator": operator, "operator_id": operator_id}


def sign_in(client: TestClient, token: str):
    page = client.get("/dashboard/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return client.post(
        "/dashboard/login", data={"token": token, "csrf": csrf}, follow_redirects=False
    )


def sessions(client: TestClient) -> list[dict]:
    with client.app.state.store.reader() as conn:
        return [dict(r._mapping) for r in conn.execute(select(t.dashboard_sessions))]


def opens(client: TestClient) -> bool:
    """Whether the client's session opens the overview (else it is sent to sign in)."""
    r = client.get("/dashboard", follow_redirects=False)
    assert r.status_code in (200, 303), r.text
    return r.status_code == 200


def test_the_cookie_holds_a_new_opaque_session_id_at_every_sign_in(dashboard):
    client, _, tokens = dashboard
    first = sign_in(client, tokens["operator"])
    assert first.status_code == 303
    session = client.cookies[COOKIE]
    assert tokens["operator"] not in first.headers["set-cookie"]
    assert session != tokens["operator"] and len(session) >= 32
    # Only the session's digest is stored, and it belongs to the token that signed in.
    (row,) = sessions(client)
    assert row["session_hash"] == digest(session) and row["token_id"] == tokens["operator_id"]
    assert opens(client)
    # The same browser signs in again: a new id, and the old one is over.
    sign_in(client, tokens["operator"])
    assert client.cookies[COOKIE] != session
    client.cookies.set(COOKIE, session, path="/dashboard")
    assert not opens(client)
    # A raw API token in the cookie is no session.
    client.cookies.set(COOKIE, tokens["operator"], path="/dashboard")
    assert not opens(client)


def test_the_sign_in_form_needs_its_own_form_token(dashboard):
    client, _, tokens = dashboard
    no_form = client.post("/dashboard/login", data={"token": tokens["operator"]})
    assert no_form.status_code == 403 and COOKIE not in client.cookies
    page = client.get("/dashboard/login")
    assert LOGIN_COOKIE in page.headers["set-cookie"]
    forged = client.post(
        "/dashboard/login",
        data={"token": tokens["operator"], "csrf": "a-value-from-another-site-entirely"},
        follow_redirects=False,
    )
    assert forged.status_code == 403 and "did not come from" in forged.text
    assert COOKIE not in client.cookies
    # Without the form's cookie (a cross-site post carries none), the field alone is not enough.
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    client.cookies.clear()
    alone = client.post("/dashboard/login", data={"token": tokens["operator"], "csrf": csrf})
    assert alone.status_code == 403
    assert sign_in(client, tokens["operator"]).status_code == 303


def test_cookies_are_secure_over_https_only(dashboard):
    _, app, tokens = dashboard
    with TestClient(app, base_url="https://testserver") as secure:
        page = secure.get("/dashboard/login")
        assert "secure" in page.headers["set-cookie"].lower()
        signed = sign_in(secure, tokens["operator"])
        session_cookie = [
            c for c in signed.headers.get_list("set-cookie") if c.startswith(COOKIE + "=")
        ]
        assert session_cookie and "secure" in session_cookie[0].lower()
        assert "httponly" in session_cookie[0].lower()
    with TestClient(app) as plain:
        signed = sign_in(plain, tokens["operator"])
        assert "secure" not in signed.headers["set-cookie"].lower()


def test_revoking_the_token_ends_its_sessions_at_once(dashboard):
    client, _, tokens = dashboard
    sign_in(client, tokens["operator"])
    assert opens(client)
    gone = client.delete(
        f"/v1/tokens/{tokens['operator_id']}",
        headers={"Authorization": f"Bearer {tokens['admin']}"},
    )
    assert gone.status_code == 200
    assert not opens(client)
    assert [s["ended_at"] is not None for s in sessions(client)] == [True]
    assert sign_in(client, tokens["operator"]).status_code == 401


def _age(client: TestClient, **moved: dt.timedelta) -> None:
    """Move the sessions' times back, as if that much time had passed."""
    s = t.dashboard_sessions.c
    for row in sessions(client):
        values = {column: row[column] - by for column, by in moved.items()}
        with client.app.state.store.transaction() as conn:
            conn.execute(
                t.dashboard_sessions.update()
                .where(s.session_hash == row["session_hash"])
                .values(values)
            )


def test_a_session_ends_after_30_idle_minutes_or_12_hours(dashboard):
    client, _, tokens = dashboard
    sign_in(client, tokens["operator"])
    _age(client, seen_at=dt.timedelta(minutes=29), created_at=dt.timedelta(minutes=29))
    assert opens(client)  # and the use is noted: idle time starts again
    (row,) = sessions(client)
    assert dt.datetime.now(dt.UTC) - row["seen_at"] < dt.timedelta(minutes=1)
    _age(client, seen_at=dt.timedelta(minutes=31))
    assert not opens(client)
    sign_in(client, tokens["operator"])
    _age(client, created_at=dt.timedelta(hours=12))  # used a minute ago, but 12 hours old
    assert not opens(client)


def test_an_expired_token_ends_its_sessions(dashboard):
    client, _, tokens = dashboard
    sign_in(client, tokens["operator"])
    assert opens(client)
    with client.app.state.store.transaction() as conn:
        conn.execute(
            t.api_tokens.update()
            .where(t.api_tokens.c.token_id == tokens["operator_id"])
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    assert not opens(client)


def test_signing_out_ends_the_session_on_the_server(dashboard):
    client, _, tokens = dashboard
    sign_in(client, tokens["operator"])
    session = client.cookies[COOKIE]
    page = client.get("/dashboard").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    out = client.post("/dashboard/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    client.cookies.set(COOKIE, session, path="/dashboard")  # a copy kept of the cookie
    assert not opens(client)
