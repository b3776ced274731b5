"""`python -m tenure` runs the command line."""

from tenure.cli import run_cli

run_cli()
