"""Customers most worth saving now: churn risk times expected value, highest first, with filters
by segment, tier and partner.

No stored column holds a current score (the customers table keeps each state; a decision's risk
is the risk when it was decided, and only decided customers have one), so the page scores: the
workspace's scorer, as the customer page uses it, on each customer's current state as of where
event time has got to. To stay bounded it scores a window, the `SCAN` most recently seen
customers that pass the tier and partner filters (chosen in SQL), then the segment (a register of
the state); the ranking is of that window, paged by keyset on (worth, id) like every list, and
the page says when the window was full. Scores only: explanations are not computed here.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

import datetime as dt
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from tenure.api.dashboard.common import Pages
from tenure.api.dashboard.lists import PAGE, Listing, answer, held
from tenure.api.paging import Keyset
from tenure.features.snapshot import snapshot
from tenure.scoring.types import Scorer
from tenure.store import dashboard_reads, queries
from tenure.store.db import Connection

SCAN = 2000
PROGRAMME = "default"
SAVING = Keyset("dashboard-saving", (float, str))
COLUMNS = tuple(
    (name, lambda r, name=name: r[name])
    for name in ("rank", "customer_id", "segment", "tier", "risk", "value", "worth", "last_seen")
)


@dataclass(frozen=True)
class Ranking:
    """The window scored, ranked: rows by worth, the segments seen in it, whether it was full."""

    rows: list[dict[str, Any]]
    segments: list[str]
    full: bool


def segment_of(state: Any) -> str | None:
    """A state's segment register (None: never set)."""
    register = state.registers.get("segment")
    return None if register is None else str(register[2])


def rank(
    conn: Connection, scorer: Scorer, segment: str | None, tier: str | None, partner: str | None
) -> Ranking:
    """Score the window of recently seen customers the filters select; highest worth first."""
    ids = dashboard_reads.recent_customers(conn, SCAN, PROGRAMME, tier, partner)
    states = queries.current_states(conn, ids)
    tiers = dashboard_reads.tiers_of(conn, PROGRAMME, ids)
    now = queries.event_time(conn)
    segments = sorted({s for s in (segment_of(st) for st, _ in states.values()) if s})
    chosen = [
        (cid, states[cid][0])
        for cid in ids
        if cid in states and (not segment or segment_of(states[cid][0]) == segment)
    ]
    seen = [dt.datetime.fromtimestamp(state.last_seen or 0, dt.UTC) for _, state in chosen]
    features = [
        snapshot(state, max(now or at, at)) for (_, state), at in zip(chosen, seen, strict=True)
    ]
    scores = scorer.score_many(features) if features else []
    rows = [
        {
            "customer_id": cid,
            "segment": segment_of(state),
            "tier": tiers.get(cid),
            "risk": s.risk,
            "value": s.value,
            "worth": round(s.risk * s.value, 4),
            "last_seen": at,
            "scorer": f"{s.scorer} {s.version}",
        }
        for (cid, state), s, at in zip(chosen, scores, seen, strict=True)
    ]
    rows.sort(key=_key)
    for place, row in enumerate(rows, 1):
        row["rank"] = place
    return Ranking(rows, segments, len(ids) >= SCAN)


def _key(row: dict[str, Any]) -> tuple[float, str]:
    return (-row["worth"], row["customer_id"])


def saving(
    pages: Pages,
    request: Request,
    segment: str = "",
    tier: str = "",
    partner: str = "",
    cursor: str | None = None,
    limit: int = PAGE,
    format: str = "html",
) -> Response:
    """Customers most worth saving now (risk x value), a page at a time."""
    who = pages.session(request)
    if isinstance(who, Response):
        return who
    segment, tier, partner = segment.strip(), tier.strip(), partner.strip()
    with pages.store.reader() as conn:
        ranking = rank(
            conn, pages.scorer_now(request), segment or None, tier or None, partner or None
        )
        tiers = dashboard_reads.tier_names(conn, PROGRAMME)
    listing = Listing(
        "worth-saving",
        SAVING,
        held(ranking.rows, _key),
        _key,
        COLUMNS,
        chunk=SCAN + 1,
    )
    render = partial(
        pages.list_page,
        request,
        "saving.html",
        who,
        ranking=ranking,
        scan=SCAN,
        chosen={"segment": segment, "tier": tier, "partner": partner},
        tiers=tiers,
        partners=sorted({p for c in pages.contracts for p in (c.oem, *c.dealers)}),
    )
    return answer(pages, request, who, listing, (cursor, limit, format), render)
