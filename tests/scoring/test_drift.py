"""PSI: zero for the same distribution, large for a shifted one, missing values count."""

from __future__ import annotations

import numpy as np

from tenure.scoring.drift import Reference, psi, reference, report


def test_same_distribution_is_stable_and_a_shift_is_flagged() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, 20_000)
    ref = reference(base)
    assert psi(ref, rng.normal(0, 1, 20_000)) < 0.01
    assert psi(ref, rng.normal(1, 1, 20_000)) > 0.25
    rows = report({"x": ref, "y": ref}, {"x": rng.normal(1, 1, 5000), "y": base})
    assert [r["feature"] for r in rows if r["drifted"]] == ["x"]


def test_missing_values_have_their_own_bin() -> None:
    values = np.array([1.0, 2.0, 3.0, np.nan] * 100)
    ref = reference(values)
    assert abs(ref.shares[-1] - 0.25) < 1e-9
    assert psi(ref, np.full(400, np.nan)) > 1.0
    assert Reference.from_record(ref.to_record()) == ref


def test_constant_feature_has_no_inner_edges() -> None:
    ref = reference(np.zeros(50))
    assert psi(ref, np.zeros(10)) < 1e-6
