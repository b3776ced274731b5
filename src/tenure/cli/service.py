"""The service's commands: `serve` and `tokens create`; thin, like the rest."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from tenure.cli.shell import (
    WorkspaceDir,
    app,
    err,
    open_workspace,
    out,
    service_logging,
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
    workspace: WorkspaceDir = None,
) -> None:
    """Create a token; it is printed once and only its digest is kept."""
    from tenure.api.auth import create_token

    _, store = open_workspace(workspace)
    with store.transaction() as conn:
        token_id, token = create_token(conn, role, partner, label, dt.datetime.now(dt.UTC))
    err.print(f"created {token_id} ({role}{' for ' + partner if partner else ''}); keep it now:")
    out.print(token, highlight=False)


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
