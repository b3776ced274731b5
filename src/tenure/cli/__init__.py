"""The `tenure` command line: parse arguments, call a service, print. Nothing else lives here.

`shell` holds what every command shares; each other module registers one area's commands on
`app` when imported: `main` (perceive, decide, prove), `journeys` (worker, journeys, tasks,
dead letters), `service` (serve, tokens) and `loyalty` (ledger, tiers, contracts, partners).
"""

# Imported in this order so `tenure --help` lists the areas as a user meets them.
# ruff: noqa: I001
from tenure.cli import main
from tenure.cli import journeys
from tenure.cli import service
from tenure.cli import loyalty
from tenure.cli.shell import app, main as run_cli

__all__ = ["app", "journeys", "loyalty", "main", "run_cli", "service"]
