"""The audit hash chain: canonical JSON, linking, and verification (pure).

Each record stores `hash = sha256(prev_hash || canonical_json(body))`, the first record linking to
64 zeros. Verification recomputes every link from the stored bodies, so an edited body, a changed
hash or a removed record all show up, and the first broken link is named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

GENESIS = "0" * 64


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8; what hashes are taken over."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def link(prev_hash: str, body: bytes) -> str:
    """The hash of a record whose canonical body is `body`, following `prev_hash`."""
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainedRecord:
    """One audit record as stored."""

    seq: int
    prev_hash: str
    hash: str
    body: bytes  # canonical JSON


def chain(prev_hash: str, start_seq: int, bodies: Iterable[Any]) -> list[ChainedRecord]:
    """Append bodies to a chain whose head is (start_seq - 1, prev_hash)."""
    out = []
    seq = start_seq
    for body in bodies:
        raw = canonical_json(body)
        h = link(prev_hash, raw)
        out.append(ChainedRecord(seq, prev_hash, h, raw))
        prev_hash = h
        seq += 1
    return out


@dataclass(frozen=True, slots=True)
class Break:
    """The first broken link of a chain and what is wrong with it."""

    seq: int
    problem: str


def verify(
    records: Iterable[ChainedRecord], prev_hash: str = GENESIS, expect_seq: int = 1
) -> tuple[int, Break | None]:
    """Recompute the chain; return (records checked, first break or None)."""
    checked = 0
    for rec in records:
        if rec.seq != expect_seq:
            return checked, Break(rec.seq, f"sequence gap: expected record {expect_seq}")
        if rec.prev_hash != prev_hash:
            return checked, Break(rec.seq, "prev_hash does not match the previous record's hash")
        if link(prev_hash, rec.body) != rec.hash:
            return checked, Break(rec.seq, "body does not match its hash (record was altered)")
        prev_hash = rec.hash
        expect_seq += 1
        checked += 1
    return checked, None
