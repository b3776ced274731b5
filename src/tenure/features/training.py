"""Point-in-time training sets: features exactly as they were at each cut-off, labels from after it.

A cut-off is a decision instant: whole epoch seconds, as the pipeline counts instants (a cut-off
with a fraction of a second stands for the whole second it falls in). The features at it are
computed by the pipeline's own code (features/instants.py): `fold_until` over the customer's
events in `event_order`, which folds those strictly before the instant, then `snapshot` at the
instant as `advance` takes it. So a model is trained on exactly what the pipeline sees at an
instant, and nothing later. Labels look only at the horizon that follows the cut-off.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from tenure.events.envelope import Event
from tenure.features.instants import event_order, features_at, fold_until, seconds
from tenure.features.snapshot import Features
from tenure.features.state import DAY_S, CustomerState

Churn = Literal["no-activity", "cancelled"]
CHURN_DEFINITIONS: tuple[Churn, ...] = ("no-activity", "cancelled")
_ACTIVITY = frozenset({"usage", "purchase"})


@dataclass(frozen=True, slots=True)
class Example:
    """One customer at one cut-off: the features then, and what happened in the horizon after."""

    customer_id: str
    cutoff: dt.datetime  # the instant the features are at (whole seconds, UTC)
    features: Features
    churned: bool
    purchases_after: int  # distinct purchase days in the horizon (the BG/NBD convention)


def _label(after: Sequence[Event], churn: Churn) -> bool:
    if churn == "no-activity":
        return not any(e.type in _ACTIVITY for e in after)
    return any(e.type == "subscription.cancelled" for e in after)


def _instant(cutoff: dt.datetime) -> int:
    """A cut-off as the instant it stands for: whole epoch seconds, as `instants.seconds`."""
    if cutoff.tzinfo is None:
        raise ValueError(f"cut-off {cutoff.isoformat()} has no time zone")
    return int(cutoff.timestamp())


def _examples(
    history: Sequence[Event], instants: Sequence[int], horizon_s: int, churn: Churn
) -> Iterator[Example]:
    """One customer's examples; `history` in event order, `instants` ascending."""
    state = CustomerState(history[0].customer_id)
    used = 0
    for at in instants:
        # The pipeline's fold (instants.advance): the events strictly before the instant.
        state, used = fold_until(state, history, used, at)
        if state.first_seen is None:
            continue
        cutoff = dt.datetime.fromtimestamp(at, dt.UTC)
        features = features_at(state, at)
        if features.subscription_status == "cancelled":
            continue
        after = history[used : bisect.bisect_left(history, at + horizon_s, used, key=seconds)]
        purchase_days = {seconds(e) // DAY_S for e in after if e.type == "purchase"}
        yield Example(state.customer_id, cutoff, features, _label(after, churn), len(purchase_days))


def training_set(
    events: Iterable[Event],
    cutoffs: Sequence[dt.datetime],
    horizon_days: float,
    churn: Churn = "no-activity",
) -> list[Example]:
    """Examples for every customer known before each cut-off and not already cancelled then."""
    if churn not in CHURN_DEFINITIONS:
        raise ValueError(f"unknown churn definition {churn!r}: use one of {CHURN_DEFINITIONS}")
    if horizon_days <= 0:
        raise ValueError("the horizon must be a positive number of days")
    by_customer: dict[str, list[Event]] = {}
    for e in events:
        by_customer.setdefault(e.customer_id, []).append(e)
    instants = sorted(_instant(c) for c in cutoffs)
    horizon_s = round(horizon_days * DAY_S)
    out: list[Example] = []
    for cid in sorted(by_customer):
        history = sorted(by_customer[cid], key=event_order)
        out.extend(_examples(history, instants, horizon_s, churn))
    return out


def rolling_cutoffs(
    first: dt.datetime,
    last: dt.datetime,
    horizon_days: float,
    step_days: float = 14.0,
    warmup_days: float = 28.0,
) -> list[dt.datetime]:
    """Cut-offs every `step_days` from `first + warmup` while a full horizon still follows."""
    out = []
    # Whole seconds, as instants are counted: the cut-offs recorded are those the features are at.
    at = first.replace(microsecond=0) + dt.timedelta(days=warmup_days)
    while at + dt.timedelta(days=horizon_days) <= last:
        out.append(at)
        at += dt.timedelta(days=step_days)
    return out
