"""The HTTP service and dashboard. Not built yet; `tenure` is command-line only for now."""
