"""The service's commands: `serve` and `tokens create|list|revoke`; thin, like the rest."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from tenure.cli.shell import (
    JsonFlag,
    WorkspaceDir,
    app,
    err,
    open_workspace,
    out,
    query,
    render,
    service_logging,
    table_of,
)

tokens_app = typer.Typer(help="API tokens (shown once, stored as digests).", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")


@tokens_app.command("create")
def tokens_create(
    role: Annotated[
        str,
        typer.Option(help="admin, ingest, policy-author, approver, operator, auditor or partner."),
    ],
    partner: Annotated[str | None, typer.Option(help="For a partner token: which partner.")] = None,
    label: Annotated[
        str,
        typer.Option(
            "--name",
            "--label",
            help="Who holds the token (a person or system); four-eyes approvals compare names.",
        ),
    ] = "",
    expires_in: Annotated[
        str | None,
        typer.Option(help="How long it lives: 90m, 12h, 30d, 2w (default: until revoked)."),
    ] = None,
    workspace: WorkspaceDir = None,
) -> None:
    """Create a token; it is printed once and only its digest is kept."""
    from tenure.api.auth import create_token, duration

    lifetime = duration(expires_in) if expires_in is not None else None
    now = dt.datetime.now(dt.UTC)
    _, store = open_workspace(workspace)
    with store.transaction() as conn:
        token_id, token = create_token(conn, role, partner, label, now, lifetime)
    until = f", expires {now + lifetime:%Y-%m-%d %H:%M} UTC" if lifetime else ""
    err.print(
        f"created {token_id} ({role}{' for ' + partner if partner else ''}{until}); keep it now:"
    )
    out.print(token, highlight=False)


def _when(value: dt.datetime | None) -> str | None:
    return None if value is None else f"{value:%Y-%m-%d %H:%M}"


@tokens_app.command("list")
def tokens_list(as_json: JsonFlag = False, workspace: WorkspaceDir = None) -> None:
    """Every token: id, name, role, partner, created, expires, revoked (never the secret)."""
    from tenure.api.auth import list_tokens

    rows = query(workspace, list_tokens)
    columns = {
        "id": "token_id",
        "name": "name",
        "role": "role",
        "partner": "partner",
        "created": lambda r: _when(r["created_at"]),
        "expires": lambda r: _when(r["expires_at"]),
        "revoked": lambda r: _when(r["revoked_at"]),
    }
    render(rows, as_json, table_of(rows, columns) if rows else "no tokens")


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `tenure tokens list`).")],
    workspace: WorkspaceDir = None,
) -> None:
    """Revoke a token: refused at once by the API and the dashboard, its sessions ended."""
    from tenure.api.auth import revoke_token
    from tenure.errors import InputError

    _, store = open_workspace(workspace)
    with store.transaction() as conn:
        found = revoke_token(conn, token_id, dt.datetime.now(dt.UTC))
    if found is None:
        raise InputError(f"no token {token_id!r} (see `tenure tokens list`)")
    out.print(f"revoked {token_id} at {_when(found['revoked_at'])} UTC", highlight=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workspace: WorkspaceDir = None,
) -> None:
    """Run the HTTP API (OpenAPI at /docs and /openapi.json)."""
    import uvicorn

    from tenure.api.app import create_app
    from tenure.config import resolve

    service_logging()
    application = create_app(resolve(workspace))
    err.print(f"tenure API on http://{host}:{port} (OpenAPI: /docs)")
    uvicorn.run(application, host=host, port=port, log_level="warning")
