"""Simulation: synthetic populations with ground truth (replay and off-policy evaluation later)."""
