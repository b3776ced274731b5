"""One person under several ids: how a batch's customer ids resolve through `alias`/`merge`.

An `alias` event (customer `K`, `previous_id` `P`) says P is K: from then on the pipeline counts
everything of P for K, and what the store held for P (state, waiting events, memory, decisions,
journeys, personal data) moves to K in the batch that sees the alias (runtime/pipeline.py).
Chains collapse: once P is K and K is L, P's events count for L.

Pure: the ids the store already maps come in as a mapping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from tenure.events.envelope import IDENTITY_TYPES, Event
from tenure.features.instants import event_order


@dataclass(frozen=True, slots=True)
class Merge:
    """`previous` joins `survivor`, by `event`."""

    previous: str
    survivor: str
    event: Event


@dataclass
class Resolved:
    """A batch's events under the ids that survive, what each was sent as, and the merges."""

    events: list[Event]
    sent_as: dict[str, str] = field(default_factory=dict)  # event id -> the id it was sent with
    merges: list[Merge] = field(default_factory=list)
    mapping: dict[str, str] = field(default_factory=dict)  # every id seen -> its survivor
    emails: dict[str, str] = field(default_factory=dict)  # an email id's digest -> the address

    def survivor(self, customer_id: str) -> str:
        """The id `customer_id` counts for now."""
        return self.mapping.get(customer_id, customer_id)


def ids_of(events: Sequence[Event]) -> set[str]:
    """Every customer id a batch names: its events' and the ids its aliases join."""
    out = {e.customer_id for e in events}
    out.update(e.payload.previous_id for e in events if e.type in IDENTITY_TYPES)
    return out


def resolve(events: Sequence[Event], stored: Mapping[str, str]) -> Resolved:
    """The batch's events under surviving ids, given the store's `alias -> survivor` mapping.

    Aliases apply in event order; an alias of an id to itself (or to an id it already is)
    changes nothing.
    """
    parent = dict(stored)

    def find(cid: str) -> str:
        seen = []
        while cid in parent and parent[cid] != cid:
            seen.append(cid)
            cid = parent[cid]
        for s in seen:
            parent[s] = cid
        return cid

    merges = []
    for e in sorted((e for e in events if e.type in IDENTITY_TYPES), key=event_order):
        survivor, previous = find(e.customer_id), find(e.payload.previous_id)
        if survivor != previous:
            parent[previous] = survivor
            merges.append(Merge(previous, survivor, e))
    out = Resolved([], merges=merges)
    for e in events:
        cid = find(e.customer_id)
        if cid != e.customer_id:
            out.sent_as[e.event_id] = e.customer_id
            e = msgspec.structs.replace(e, customer_id=cid)
        out.events.append(e)
    out.mapping = {cid: find(cid) for cid in parent}
    return out
