"""Outcomes and lift: the intervals are the textbook ones and the grouping is per version/action."""

from __future__ import annotations

import datetime as dt
import math

from tenure.policy.lift import Decided, difference_ci, outcome, report, wilson

T = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def test_wilson_matches_known_values() -> None:
    low, high = wilson(10, 100)
    assert math.isclose(low, 0.0552, abs_tol=1e-4) and math.isclose(high, 0.1744, abs_tol=1e-4)
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_difference_interval_contains_the_difference() -> None:
    low, high = difference_ci(10, 100, 30, 100)  # p2 - p1 = 0.2
    assert low < 0.2 < high and low > 0  # clearly different
    low, high = difference_ci(10, 100, 12, 100)
    assert low < 0 < high  # not distinguishable


def test_outcome_windows() -> None:
    later = T + dt.timedelta(days=40)
    assert outcome(T, [T + dt.timedelta(days=5)], later, 30) == "churned"
    assert outcome(T, [T - dt.timedelta(days=5)], later, 30) == "saved"  # cancelled before: not
    assert outcome(T, [], T + dt.timedelta(days=10), 30) == "unknown"


def test_report_compares_each_action_with_its_policy_versions_control() -> None:
    decided = [Decided(f"t{i}", T, "p", "h1", "email", 1.0) for i in range(100)]
    decided += [Decided(f"c{i}", T, "p", "h1", None, 0.0) for i in range(100)]
    decided += [Decided(f"x{i}", T, "p", "h2", "email", 1.0) for i in range(10)]
    cancels = {f"t{i}": [T + dt.timedelta(days=3)] for i in range(10)}
    cancels |= {f"c{i}": [T + dt.timedelta(days=3)] for i in range(30)}
    rows = report(decided, cancels, T + dt.timedelta(days=60), 30)
    by_version = {r["policy_version"]: r for r in rows}
    first = by_version["h1"]
    assert first["treated"]["churn_rate"] == 0.1 and first["control"]["churn_rate"] == 0.3
    assert first["lift"]["churn_reduction"] == 0.2 and first["lift"]["saved"] == 20.0
    assert first["lift"]["cost_per_saved"] == 5.0 and first["lift"]["ci95"][0] > 0
    assert by_version["h2"]["control"]["customers"] == 0
    assert by_version["h2"]["lift"]["churn_reduction"] is None
