"""`python -m tenure` runs the command line."""

from tenure.cli import main

main()
