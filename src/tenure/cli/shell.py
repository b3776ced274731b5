"""What every `tenure` command shares: the app and its sub-apps, the consoles, the global
options, the workspace option, and the one error boundary (`fail`) and JSON printer (`dump`).

Commands live in the modules beside this one, by area; `tenure.cli` imports them all so they
register on `app`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import orjson
import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from typer.core import TyperGroup

from tenure import __version__
from tenure.config import Settings, resolve
from tenure.errors import TenureError
from tenure.store.db import Store

DEMO_BATCH_SIZE = 40_000  # batching changes speed only: decisions are at instants
STDIN_BATCH_SIZE = 1_000
T = TypeVar("T")


class _ErrorBoundary(TyperGroup):
    """The one error boundary of the command line: any failure a user can act on (tenure's own
    errors, a store that refuses, a file that cannot be read), raised by any command at any
    depth, becomes one line on stderr and exit code 2, never a traceback."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _reflow(self)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn a known failure into its one-line message."""
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # The reader went away (`tenure decisions list | head`): stop quietly, as other
            # tools do, with stdout pointed at nothing so the exit's flush cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None
        except FAILURES as exc:
            raise fail(exc) from None


def _reflow(command: Any) -> None:
    """Each paragraph of every command's help as one line, for the terminal to wrap.

    Typer joins the lines of a help's first paragraph but keeps the line breaks of the others,
    so a docstring's (wrapped at 100 columns in the source) printed ragged on an 80-column
    terminal. A paragraph with indented or bulleted lines keeps them.
    """
    for sub in getattr(command, "commands", {}).values():
        _reflow(sub)
    if not command.help:
        return
    paragraphs = command.help.split("\n\n")
    command.help = "\n\n".join(
        p
        if p.startswith("\b") or any(ln[:1] in " -*" for ln in p.split("\n"))
        else " ".join(ln.strip() for ln in p.split("\n"))
        for p in paragraphs
    )


app = typer.Typer(
    cls=_ErrorBoundary,
    help="tenure keeps customers: events in, governed and audited retention actions out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
events_app = typer.Typer(help="The event envelope.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit of every decision.", no_args_is_help=True)
customers_app = typer.Typer(help="What tenure knows about a customer.", no_args_is_help=True)
decisions_app = typer.Typer(help="Decisions made by policies.", no_args_is_help=True)
rejects_app = typer.Typer(
    help="Input lines that did not become events, with reasons.", no_args_is_help=True
)
app.add_typer(events_app, name="events")
app.add_typer(audit_app, name="audit")
app.add_typer(customers_app, name="customers")
app.add_typer(decisions_app, name="decisions")
report_app = typer.Typer(help="Reports on what the decisions achieved.", no_args_is_help=True)
app.add_typer(report_app, name="report")
policy_app = typer.Typer(
    help="Policies: validate, test against cases, compare on history.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")
model_app = typer.Typer(
    help="Churn and value models: train, compare, promote, watch.", no_args_is_help=True
)
app.add_typer(rejects_app, name="rejects")
app.add_typer(model_app, name="model")

out = Console()
err = Console(stderr=True)

# The log options as given (None: not given), for the long-running commands to default to info.
LOG_OPTIONS: dict[str, Any] = {"level": None, "format": "json", "file": None}


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tenure {__version__}")
        raise typer.Exit()


@app.callback()
def _logging(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print tenure's version and exit.",
        ),
    ] = False,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            envvar="TENURE_LOG_LEVEL",
            help="debug, info, warning or error (default: info for serve and worker, else "
            "warning).",
            show_default=False,
        ),
    ] = None,
    log_format: Annotated[
        str,
        typer.Option("--log-format", envvar="TENURE_LOG_FORMAT", help="json or console."),
    ] = "json",
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            envvar="TENURE_LOG_FILE",
            help="Append log lines to this file instead of stderr.",
            show_default=False,
        ),
    ] = None,
) -> None:
    # Logs are for operators and machines: JSON on stderr (or a file), never on stdout, where
    # commands print their results. Tracing exports only when the OTEL_* variables ask.
    from tenure.observe.logs import configure_logging
    from tenure.observe.tracing import configure_tracing

    LOG_OPTIONS.update(level=log_level, format=log_format, file=log_file)
    try:
        configure_logging(log_level or "warning", log_format, log_file)
        configure_tracing()
    except (ValueError, TenureError, OSError) as exc:
        raise fail(exc) from None


def service_logging() -> None:
    """Long-running commands log at info unless a level was given."""
    if LOG_OPTIONS["level"] is None:
        from tenure.observe.logs import configure_logging

        configure_logging("info", LOG_OPTIONS["format"], LOG_OPTIONS["file"])


WorkspaceDir = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace directory (default ./.tenure or "
        "$TENURE_WORKSPACE). TENURE_DATABASE_URL selects PostgreSQL instead of the "
        "workspace's SQLite file.",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def dump(obj: Any) -> None:
    typer.echo(
        orjson.dumps(
            obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str
        ).decode()
    )


# What a command turns into a one-line error and exit 2 instead of a traceback: our own errors,
# a database that refuses (read-only file, lost connection), and the file system.
FAILURES = (TenureError, SQLAlchemyError, OSError)


def fail(exc: BaseException) -> typer.Exit:
    if isinstance(exc, SQLAlchemyError):
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        message = f"the store refused the operation: {detail}"
    elif isinstance(exc, OSError) and not isinstance(exc, TenureError):
        message = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    else:
        message = str(exc)
    # Escaped: a message may quote input (an id, a path) that looks like Rich markup.
    err.print(f"[red]error:[/red] {plain(message, lines=True)}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def open_workspace(workspace: Path | None) -> tuple[Settings, Store]:
    settings = resolve(workspace)
    return settings, Store(settings.database_url)


def query(workspace: Path | None, read: Callable[[Connection], T]) -> T:
    """Run one read against the workspace's store; any failure is a one-line error."""
    _, store = open_workspace(workspace)
    with store.reader() as conn:
        return read(conn)


def main() -> None:
    """Entry point for `python -m tenure`."""
    from tenure.cli import app as registered  # every area's commands on the app

    registered()


def plain(value: Any, lines: bool = False) -> str:
    """Data shown as text, never as terminal control or Rich markup: control and format
    characters (ESC sequences, bidi overrides, zero-width) become visible escapes, and markup
    brackets are escaped. `lines`: newlines are kept (a message of several lines)."""
    text = str(value)
    if not text.isprintable():
        keep = " \n" if lines else " "
        text = "".join(c if c.isprintable() or c in keep else f"\\u{ord(c):04x}" for c in text)
    return escape(text)


# A column of `table_of`: the row's field of that name, or a function of the row.
Column = str | Callable[[Mapping[str, Any]], Any]


def table_of(
    rows: Sequence[Mapping[str, Any]], columns: Mapping[str, Column], title: str | None = None
) -> Table:
    """A table with one column per header; an empty or missing cell shows as '-'."""
    table = Table(title=title, title_justify="left")
    for header in columns:
        table.add_column(header)
    for r in rows:
        cells = [r.get(c) if isinstance(c, str) else c(r) for c in columns.values()]
        table.add_row(*("-" if v is None or v == "" else plain(v) for v in cells))
    return table


def render(data: Any, as_json: bool, *parts: RenderableType) -> None:
    """The one way a command prints its result: `data` as JSON with --json, else the parts
    people read (tables, lines), in order."""
    if as_json:
        dump(data)
        return
    for part in parts:
        out.print(part)
