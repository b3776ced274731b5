"""Sweep throughput: silent customers decided by a live clock, with no new event.

Writes a history in which every one of N customers (100,000 by default) has one to three usage
events within a few days (half of them also a purchase and an email consent, so decisions can
act: `--buyers`), runs it through the pipeline with the default policy (its
`after_silence: [7, 14, 30]`) into a fresh SQLite workspace, and sweeps once at the close of the
last day so the period closes are all decided (none of this is timed). Then a new pipeline with a
live `FixedClock` at the newest event plus 8 days sweeps: every customer's 7-day silence timer
is due, and only it. The sweep is timed and reported as evaluations per second, with its peak
resident memory; a store query then checks that no customer is still due. With `--second-sweep`
a second one follows at plus 15 days: the 14-day timers, on the same pipeline (its cache warm),
where the default policy finds the buyers at risk and acts (journeys, outbox rows, budget).

    python benchmarks/sweep.py [--customers 100000] [--days 3] [--buyers 0.5] [--second-sweep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from tenure.config import DEFAULT_LATENESS_S
from tenure.events.parse import LineParser
from tenure.features.state import DAY_S
from tenure.policy.model import default_policy
from tenure.runtime.clock import FixedClock
from tenure.runtime.engine import learned
from tenure.runtime.pipeline import Pipeline, RunSummary
from tenure.store import repo
from tenure.store.db import Store

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def write_history(
    path: Path, customers: int, days: int, buyers: float, seed: int
) -> tuple[int, dt.datetime]:
    """One to three usage events per customer within `days` days from T0; for a share of
    `buyers` also a purchase and an email marketing consent (so they have a value worth acting
    on, and a channel to act through). In time order. Returns the count and the newest time."""
    rng = random.Random(seed)
    span = days * DAY_S
    start = int(T0.timestamp())
    events: list[tuple[int, str, str, str, dict[str, Any]]] = []
    for c in range(customers):
        cid = f"c-{c:07d}"
        for k in range(rng.randint(1, 3)):
            usage = {"sessions": 1, "minutes": round(rng.uniform(1, 90), 1)}
            events.append((start + rng.randrange(span), cid, f"u{k}", "usage", usage))
        if rng.random() < buyers:
            consent = {"channel": "email", "purpose": "marketing"}
            events.append((start + rng.randrange(span), cid, "c", "consent.granted", consent))
            purchase = {"amount": round(rng.uniform(20, 400), 2), "currency": "EUR"}
            events.append((start + rng.randrange(span), cid, "p", "purchase", purchase))
    events.sort()
    with path.open("wb") as fh:
        for at, cid, suffix, kind, payload in events:
            fh.write(
                orjson.dumps(
                    {
                        "event_id": f"{cid}-{suffix}",
                        "type": kind,
                        "customer_id": cid,
                        "occurred_at": dt.datetime.fromtimestamp(at, dt.UTC).isoformat(),
                        "source": "app",
                        "payload": payload,
                    }
                )
                + b"\n"
            )
    return len(events), dt.datetime.fromtimestamp(events[-1][0], dt.UTC)


def due_count(store: Store, until: dt.datetime) -> int:
    """Customers whose next instant is at or before `until` (the watermark of a live clock)."""
    with store.reader() as conn:
        return len(repo.due_customers(conn, int(until.timestamp())))


def _status_kb(field: str) -> int | None:
    try:
        for row in STATUS.read_text().splitlines():
            if row.startswith(field + ":"):
                return int(row.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the process's peak resident size (Linux: VmHWM), so the sweep's own is measured."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class Timed(NamedTuple):
    """One timed sweep: what it did, how long it took, what it held.

    (A named tuple, not a dataclass: tests/test_benchmarks.py executes this file as a module it
    does not register, and dataclasses look their module up.)"""

    label: str
    due: int
    summary: RunSummary
    seconds: float
    rss_before_mb: float
    peak_mb: float
    peak_is_sweep: bool  # False: the process's lifetime peak (no VmHWM reset here)
    gc_runs: int
    gc_seconds: float
    still_due: int


def timed_sweep(label: str, store: Store, pipeline: Pipeline, clock: FixedClock) -> Timed:
    """Sweep at the clock's time, timed, with its peak memory and garbage collections."""
    until = clock.now() - dt.timedelta(seconds=DEFAULT_LATENESS_S)
    due = due_count(store, until)
    gc_times: list[float] = []  # each collection's duration
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_times.append(time.perf_counter() - gc_started[0])

    rss_before = _status_kb("VmRSS") or 0
    reset = _reset_peak()
    gc.callbacks.append(on_gc)
    start = time.perf_counter()
    summary = pipeline.sweep()
    seconds = time.perf_counter() - start
    gc.callbacks.remove(on_gc)
    peak = _status_kb("VmHWM") if reset else None
    if peak is None:
        reset = False
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return Timed(
        label,
        due,
        summary,
        seconds,
        rss_before / 1024,
        peak / 1024,
        reset,
        len(gc_times),
        sum(gc_times),
        due_count(store, until),
    )


def report(t: Timed) -> None:
    """Print one sweep's figures."""
    s = t.summary
    made = sum(s.decisions.values())
    rate = s.instants / t.seconds if t.seconds else float("inf")
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(s.decisions.items())) or "no decision made"
    print(f"sweep at {t.label}")
    print(f"  customers due            {t.due:10,}")
    print(f"  instants evaluated       {s.instants:10,}")
    print(f"  decisions made           {made:10,}  ({statuses}; {s.on_silence:,} on silence)")
    print(f"  seconds                  {t.seconds:10.2f}")
    print(f"  evaluations per second   {rate:10,.0f}")
    print(f"  customers per second     {t.due / t.seconds if t.seconds else 0:10,.0f}")
    what = "peak during sweep" if t.peak_is_sweep else "peak of the process"
    print(
        f"  resident memory          {t.rss_before_mb:10,.0f} MB before, {t.peak_mb:,.0f} MB {what}"
    )
    print(f"  garbage collections      {t.gc_runs:10,}  ({t.gc_seconds:.2f} s)")
    verdict = "ok" if t.still_due == 0 else "NOT ALL EVALUATED"
    print(f"  still due after sweep    {t.still_due:10,}  ({verdict})")


def main() -> None:
    """Build the history, sweep, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=3, help="span of the history (at most 5)")
    ap.add_argument(
        "--buyers",
        type=float,
        default=0.5,
        help="share of customers with a purchase and email consent (0: usage only)",
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--second-sweep", action="store_true", help="sweep again at +15 days (decisions made)"
    )
    args = ap.parse_args()
    if args.customers < 1:
        ap.error("--customers must be at least 1")
    # Longer spans would make some customers' 14-day timers due at the first sweep too.
    days = min(max(args.days, 1), 5)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = root / "events.jsonl"
        n, newest = write_history(path, args.customers, days, args.buyers, args.seed)
        store = Store(f"sqlite:///{root / 'tenure.db'}")
        policy = default_policy()
        started = time.perf_counter()
        with path.open("rb") as fh:
            history = Pipeline(store, policy).run(LineParser().parse_stream(fh), str(path))
        history_s = time.perf_counter() - started
        # Decide the last day's close, so the timed sweep evaluates silence timers alone.
        close = (int(newest.timestamp()) // DAY_S + 1) * DAY_S + DEFAULT_LATENESS_S
        settle_clock = FixedClock(dt.datetime.fromtimestamp(close, dt.UTC))
        started = time.perf_counter()
        settled = Pipeline(store, policy, clock=settle_clock).sweep()
        settle_s = time.perf_counter() - started
        print(f"customers                  {args.customers:10,}")
        print(f"events                     {n:10,}  over {days} days, newest {newest.isoformat()}")
        print(f"share with purchase+consent{args.buyers:10.2f}")
        print(
            f"history run (untimed)      {history_s:10.2f} s  {history.instants:,} instants, "
            f"{sum(history.decisions.values()):,} decisions"
        )
        print(
            f"settle sweep (untimed)     {settle_s:10.2f} s  {settled.instants:,} instants "
            "(the last day's closes)"
        )
        clock = FixedClock(newest + dt.timedelta(days=8))
        # A fresh pipeline (its cache is cold) with what the store has learned, as the engine
        # builds a live worker's: the scorer, and the decisions uplift evidence comes from.
        known = learned(store)
        pipeline = Pipeline(
            store, policy, clock=clock, scorer=known.scorer, history=known.history()
        )
        first = timed_sweep("newest + 8 days (7-day timers, cold cache)", store, pipeline, clock)
        report(first)
        if args.second_sweep:
            clock.set(newest + dt.timedelta(days=15))
            label = "newest + 15 days (14-day timers, warm cache)"
            report(timed_sweep(label, store, pipeline, clock))
        store.close()


if __name__ == "__main__":
    main()
