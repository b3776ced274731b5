"""Partial returns, pure: whatever the sequence of returns, they never take back more than the
purchase earned nor more than a funder gave, and once it has all come back, exactly that."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tenure.loyalty.returns import allocate, asked_back, returned_share


@given(
    granted=st.integers(0, 10_000),
    funding=st.lists(st.integers(1, 100), min_size=1, max_size=4),
    parts=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8),
    paid=st.lists(st.floats(0.0, 1.0), min_size=8, max_size=8),
)
def test_returns_add_up_to_at_most_the_whole_and_each_funder_its_share(
    granted, funding, parts, paid
):
    total = sum(funding)
    names = [f"f{i}" for i in range(len(funding))]
    shares = {n: granted * w // total for n, w in zip(names, funding, strict=True)}
    shares["f0"] += granted - sum(shares.values())
    returned, clawed, asked_in_all = 0.0, {}, 0
    for part, pays in zip(parts, paid, strict=False):
        returned, asked = asked_back(granted, returned, part)
        asked_in_all += asked
        # The balance pays some of what is asked (within_balance); the rest is forgiven.
        takes = allocate(shares, clawed, int(asked * pays), "f0")
        assert sum(takes.values()) == int(asked * pays)
        clawed = {n: clawed.get(n, 0) + takes.get(n, 0) for n in shares}
        assert all(clawed[n] <= shares[n] for n in shares)
    assert asked_in_all <= granted
    if sum(parts) >= 1.0:
        assert returned == 1.0 and asked_in_all == granted


def test_a_share_is_measured_by_amount_or_items_and_never_beyond_the_whole():
    purchase = {"amount": 80.0, "items": 4}
    assert returned_share(purchase, None, None).share == 1.0
    assert returned_share(purchase, 20.0, None).share == 0.25
    assert returned_share(purchase, None, 3).share == 0.75
    assert returned_share(purchase, 500.0, None).share == 1.0
    assert returned_share({"amount": 10.0}, None, 1).share == 1.0  # one item unless told
    assert asked_back(100, 0.0, 1 / 3) == (1 / 3, 33)
    assert asked_back(100, 2 / 3, 1 / 3) == (1.0, 34)
