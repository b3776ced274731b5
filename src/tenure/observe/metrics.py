"""Prometheus metrics: what the store says (true across processes) and what this process did.

`StoreCollector` asks the store at scrape time, a handful of grouped counts: journeys by state,
deliveries by kind, channel and status, failed delivery attempts, each channel's circuit,
ledger transfers and points by kind and status, the budget used in each policy's latest period
and the decisions recorded. Every pipeline, worker and API process writes the same tables, so
these are right whichever process is scraped. Process counters (`PROCESS`) measure work done
here: pipeline batch latency, dispatcher results, courier receipts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from tenure.channels.adapters import ChannelSettings
from tenure.runtime.clock import WallClock
from tenure.store.db import Store
from tenure.store.gauges import StoreCounts, store_counts
from tenure.times import Clock, epoch

JOURNEY_STATES = ("pending", "running", "completed", "failed")
CIRCUIT_STATES = ("closed", "open", "half_open")

PROCESS = CollectorRegistry(auto_describe=True)
BATCH_SECONDS = Histogram(
    "tenure_pipeline_batch_seconds",
    "Time to perceive, decide and commit one pipeline batch",
    registry=PROCESS,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
DISPATCHED = Counter(
    "tenure_dispatch",
    "Outbox rows handed to Temporal, by result",
    ["kind", "result"],
    registry=PROCESS,
)
SENT = Counter(
    "tenure_courier_receipts",
    "Messages the courier of this process handled, by channel and outcome",
    ["channel", "status"],
    registry=PROCESS,
)


class ProcessCollector(Collector):
    """This process's counters, for another registry (the API's, the worker's)."""

    def collect(self) -> Iterator[Metric]:
        yield from PROCESS.collect()


class StoreCollector(Collector):
    """Gauges read from the store at scrape time; a store that fails makes `tenure_store_up` 0."""

    def __init__(
        self,
        store: Store,
        channels: Mapping[str, ChannelSettings] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.channels = dict(channels or {})
        self.clock: Clock = clock or WallClock()

    def _now(self) -> float:
        """The clock's time in epoch seconds (this edge counts leases and windows in numbers)."""
        return epoch(self.clock.now())

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not query the store."""
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("tenure_store_up", "1 when the store answered this scrape")
        try:
            families = self._families()
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> list[Metric]:
        with self.store.reader() as conn:
            counts = store_counts(conn)
        return [
            *_journey_families(counts),
            *_delivery_families(counts),
            *self._channel_families(counts),
            *_ledger_families(counts),
            *_decision_families(counts),
        ]

    def _channel_families(self, counts: StoreCounts) -> list[Metric]:
        circuit = GaugeMetricFamily(
            "tenure_channel_circuit",
            "Each channel's circuit breaker: 1 for the state it is in",
            labels=["channel", "state"],
        )
        streak = GaugeMetricFamily(
            "tenure_channel_consecutive_failures",
            "Failed attempts on a channel since its last delivery",
            labels=["channel"],
        )
        now = self._now()
        for row in sorted(counts.channels, key=lambda r: r["channel"]):
            state = row["circuit"]
            if state == "open":
                opened = row["opened_at"].timestamp() if row["opened_at"] else 0.0
                open_for = (self.channels.get(row["channel"]) or ChannelSettings()).open_for_s
                if now - opened >= open_for:
                    state = "half_open"
            for s in CIRCUIT_STATES:
                circuit.add_metric([row["channel"], s], 1 if s == state else 0)
            streak.add_metric([row["channel"]], row["failures"])
        return [circuit, streak]


def _journey_families(counts: StoreCounts) -> list[Metric]:
    g = GaugeMetricFamily("tenure_journeys", "Journeys by state", labels=["state"])
    for state in sorted({*JOURNEY_STATES, *counts.journeys}):
        g.add_metric([state], counts.journeys.get(state, 0))
    return [g]


def _delivery_families(counts: StoreCounts) -> list[Metric]:
    g = GaugeMetricFamily(
        "tenure_deliveries",
        "Effects recorded (sends, tickets, grants, revocations) by kind, channel and status",
        labels=["kind", "channel", "status"],
    )
    failures: dict[str, int] = {}
    for kind, channel, status, count, attempts in counts.deliveries:
        g.add_metric([kind, channel or "", status], count)
        if kind in ("deliver", "ticket") and channel:
            # Every attempt but the one that delivered failed.
            failed = int(attempts) - (count if status == "delivered" else 0)
            failures[channel] = failures.get(channel, 0) + max(0, failed)
    f = GaugeMetricFamily(
        "tenure_delivery_failed_attempts",
        "Failed delivery attempts per channel (retried, then delivered or dead-lettered)",
        labels=["channel"],
    )
    for channel, failed in sorted(failures.items()):
        f.add_metric([channel], failed)
    return [g, f]


def _ledger_families(counts: StoreCounts) -> list[Metric]:
    count = GaugeMetricFamily(
        "tenure_ledger_transfers", "Ledger transfers by kind and status", labels=["kind", "status"]
    )
    points = GaugeMetricFamily(
        "tenure_ledger_points",
        "Points moved by ledger transfers, by kind and status",
        labels=["kind", "status"],
    )
    for kind, status, n, amount in counts.transfers:
        count.add_metric([kind, status], n)
        points.add_metric([kind, status], int(amount))
    return [count, points]


def _decision_families(counts: StoreCounts) -> list[Metric]:
    budget = GaugeMetricFamily(
        "tenure_budget_spent",
        "Budget reserved in each policy's latest budget period",
        labels=["policy", "period"],
    )
    for policy, period, spent in sorted(counts.budgets):
        budget.add_metric([policy, period], float(spent))
    decisions = GaugeMetricFamily(
        "tenure_recorded_decisions",
        "Decisions in the store by mode, status and the guardrail that suppressed them",
        labels=["mode", "status", "guardrail"],
    )
    for mode, status, guardrail, n in counts.decisions:
        decisions.add_metric([mode, status, guardrail], n)
    return [budget, decisions]


def registry_for(store: Store, channels: Mapping[str, ChannelSettings] | None = None) -> Any:
    """A registry with the store's gauges and this process's counters (for a worker)."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, channels))
    registry.register(ProcessCollector())
    return registry
