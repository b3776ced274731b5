"""Scoring throughput: customers scored per second by each scorer, on the same snapshots.

Generates a population, builds every customer's snapshot at the end of the history, trains the
classifier and the purchase models on it (not timed), then times each scorer over the snapshots.

    python benchmarks/scoring.py [--customers 2000] [--days 120] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time

import orjson

from tenure.events.parse import LineParser, RawLine
from tenure.scoring.baseline import BaselineScorer
from tenure.scoring.model import ModelScorer, PurchaseScorer
from tenure.services import models
from tenure.sim.population import PopulationSpec, generate


def main() -> None:
    """Print customers per second for each scorer, and for the model's explanations."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    parser = LineParser()
    spec = PopulationSpec(customers=args.customers, days=args.days, seed=13)
    events = [parser.parse(RawLine(i, orjson.dumps(e))) for i, e in enumerate(generate(spec), 1)]
    trained = models.train(events, horizon_days=30)
    last = max(e.occurred_at for e in events)
    snaps = models.final_snapshots(events, last)
    assert trained.bundle.purchases is not None
    gbm = ModelScorer("bench", trained.bundle)
    runs = [
        ("baseline heuristic", BaselineScorer().score_many),
        (
            "bg/nbd (+ baseline for non-buyers)",
            PurchaseScorer("bench", trained.bundle.purchases).score_many,
        ),
        ("gbm: risk + 12-month CLV", gbm.score_many),
        ("gbm: tree-contribution explanations", gbm.explain_many),
    ]
    print(f"customers  {len(snaps)}   repeat {args.repeat}")
    rates = {}
    for name, fn in runs:
        fn(snaps)  # warm up
        start = time.perf_counter()
        for _ in range(args.repeat):
            fn(snaps)
        rate = len(snaps) * args.repeat / (time.perf_counter() - start)
        rates[name] = rate
        print(f"{name:38s} {rate:12,.0f} customers/s")
    base = rates["baseline heuristic"]
    for name, rate in rates.items():
        print(f"ratio to baseline: {name:38s} {rate / base:6.2f}")


if __name__ == "__main__":
    main()
