"""Loyalty, pure: the double-entry points ledger (transfers, holds, lots), partner contracts
(earn rules, co-funding, caps, effective dates), tiers and partner statement reconciliation.
Posting to the store is the shell's job.
"""
