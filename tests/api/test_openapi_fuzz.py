"""schemathesis against the published OpenAPI: generated requests to every operation, as admin
(so every handler runs past its guard), must never get a server error."""

from __future__ import annotations

import datetime as dt

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tenure.api.app import create_app
from tenure.api.auth import create_token
from tenure.config import resolve
from tenure.store.db import Store


@pytest.fixture
def admin_token(tmp_path) -> str:
    ws = tmp_path / "ws"
    settings_ = resolve(ws)
    store = Store(settings_.database_url)
    with store.transaction() as conn:
        token = create_token(conn, "admin", None, "fuzz", dt.datetime.now(dt.UTC))[1]
    store.close()
    return token


@pytest.fixture
def api_schema(tmp_path, admin_token):
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(resolve(tmp_path / "ws")))
    # Valid and invalid requests alike; a fixed seed keeps CI repeatable.
    schema.config.generation.update(modes=list(GenerationMode), deterministic=True)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_server_error(case, admin_token):
    response = case.call(headers={"Authorization": f"Bearer {admin_token}"})
    case.validate_response(response, checks=[not_a_server_error])
