"""schemathesis against the published OpenAPI: generated requests to every operation, as admin
(so every handler runs past its guard), must never get a server error, never a status code or a
media type the operation does not document, and every error they get must be a problem document
(application/problem+json with type, title and status)."""

from __future__ import annotations

import datetime as dt

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    status_code_conformance,
)
from schemathesis.config import OperationConfig

from tenure.api.app import create_app
from tenure.api.auth import create_token
from tenure.config import resolve
from tenure.store.db import Store
from tests.fixtures.hostile import problem_of


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
    schema.config.generation.update(modes=list(GenerationMode), deterministic=True, max_examples=25)
    # The coverage phase walks every boundary of every event type's envelope: thousands of
    # batches. The fuzzing phase still sends generated events of every type.
    events = {
        "include-path": "/v1/events",
        "phases": {"coverage": {"enabled": False}},
        "generation": {"max-examples": 300},
    }
    schema.config.operations.operations.append(OperationConfig.from_dict(events))
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schemathesis.check
def problem_json(ctx, response, case) -> None:
    """Every response with a status of 400 or more is an RFC 9457 problem document."""
    if response.status_code >= 400:
        content_type = next(iter(response.headers.get("content-type") or []), None)
        problem_of(response.status_code, content_type, response.content)


@schema.parametrize()
@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_server_error_no_undocumented_status_and_every_error_is_a_problem(case, admin_token):
    response = case.call(headers={"Authorization": f"Bearer {admin_token}"})
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, problem_json]
    case.validate_response(response, checks=checks)
