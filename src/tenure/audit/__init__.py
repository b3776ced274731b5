"""Prove: a hash-chained audit of every decision with its lineage."""

from tenure.audit.chain import GENESIS, Break, ChainedRecord, canonical_json, chain, link, verify

__all__ = ["GENESIS", "Break", "ChainedRecord", "canonical_json", "chain", "link", "verify"]
