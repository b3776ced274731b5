"""Perceive: per-customer state folded from events in event time, and feature snapshots of it."""

from tenure.features.snapshot import Features, snapshot
from tenure.features.state import CustomerState, apply, apply_all

__all__ = ["CustomerState", "Features", "apply", "apply_all", "snapshot"]
