"""The audit chain: links verify; any edit, reorder or removal is found and named."""

from __future__ import annotations

import dataclasses
import itertools

from tenure.audit.chain import GENESIS, canonical_json, chain, verify


def records():
    return chain(GENESIS, 1, [{"n": i, "who": "c-1", "x": [1, 2.5, None]} for i in range(5)])


def test_chain_verifies() -> None:
    recs = records()
    assert recs[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(recs))
    assert verify(recs) == (5, None)


def test_canonical_json_ignores_key_order() -> None:
    assert canonical_json({"b": 1, "a": {"d": 2, "c": 3}}) == canonical_json(
        {"a": {"c": 3, "d": 2}, "b": 1}
    )


def test_edited_body_is_named() -> None:
    recs = records()
    recs[2] = dataclasses.replace(recs[2], body=recs[2].body.replace(b'"n":2', b'"n":7'))
    checked, broken = verify(recs)
    assert checked == 2 and broken is not None and broken.seq == 3 and "altered" in broken.problem


def test_rehashed_edit_breaks_the_next_link() -> None:
    recs = records()
    forged = chain(recs[1].hash, 3, [{"n": 99}])[0]
    recs[2] = forged
    _checked, broken = verify(recs)
    assert broken is not None and broken.seq == 4 and "prev_hash" in broken.problem


def test_removed_record_is_a_gap() -> None:
    recs = records()
    del recs[1]
    _, broken = verify(recs)
    assert broken is not None and broken.seq == 3 and "gap" in broken.problem
