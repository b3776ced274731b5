"""The `tenure` command line: parse arguments, call a service, print. Nothing else lives here.

`shell` holds what every command shares; each other module registers one area's commands on
`app` when imported: `run` (run, generate, demo, stats, simulate), `records` (events, audit,
customers, decisions, rejects, lift), `models`, `policies`, `journeys` (worker, journeys,
tasks, dead letters), `service` (serve, tokens) and `loyalty` (ledger, tiers, contracts,
partners).
"""

# Imported in this order so `tenure --help` lists the areas as a user meets them.
# ruff: noqa: I001
from tenure.cli import run
from tenure.cli import records
from tenure.cli import models
from tenure.cli import policies
from tenure.cli import journeys
from tenure.cli import service
from tenure.cli import loyalty
from tenure.cli.shell import app, main as run_cli

__all__ = [
    "app",
    "journeys",
    "loyalty",
    "models",
    "policies",
    "records",
    "run",
    "run_cli",
    "service",
]
