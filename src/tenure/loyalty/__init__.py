"""Loyalty: the double-entry points ledger, tiers and partner contracts. Not built yet."""
