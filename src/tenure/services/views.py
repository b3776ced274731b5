"""Read models shared by the CLI and the API: what a person looks at about a customer."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection

from tenure.events.personal import id_of
from tenure.features.snapshot import snapshot
from tenure.loyalty.ledger import member_account
from tenure.scoring.types import Scorer, explained
from tenure.services.models import scorer_for
from tenure.store import acts, ledger, queries, repo
from tenure.store.personal import personal
from tenure.times import iso


def customer_view(
    conn: Connection,
    customer_id: str,
    programme: str = "default",
    scorer: Scorer | None = None,
    as_of: dt.datetime | None = None,
) -> dict[str, Any] | None:
    """Features as of now, risk with its explanation, value, decisions, journeys, loyalty
    balance and tier; None for a customer the workspace has never seen.

    Now is `as_of` (the API passes its clock: live, the wall's), else where the workspace's
    event time has got to (its newest event), so a silent customer's silence shows and grows.
    """
    # The id as kept: an email id's digest, the survivor of a merged id.
    customer_id = id_of(customer_id)
    customer_id = repo.identities_of(conn, [customer_id]).get(customer_id, customer_id)
    found = queries.customer(conn, customer_id)
    if found is None:
        return None
    state = found["state"]
    newest = dt.datetime.fromtimestamp(state.last_seen or 0, dt.UTC)
    now = max(as_of or queries.event_time(conn) or newest, newest)
    features = snapshot(state, now)
    scorer = scorer or scorer_for(conn)  # a service passes the one it loaded at start
    score = explained(scorer, [features], scorer.score_many([features]))[0]
    account = member_account(programme, customer_id)
    balances = ledger.account(conn, account)
    tier = queries.tier(conn, programme, customer_id)
    return {
        "customer_id": customer_id,
        "as_of": iso(now),
        "personal": personal(conn, customer_id),
        "features": features.to_record(),
        "score": score.to_record(),
        "memory": found["memory"],
        # The newest events as the log keeps them: extra payload fields and context included.
        "events": queries.customer_events(conn, customer_id, limit=10),
        "decisions": queries.decisions(conn, customer_id=customer_id, limit=10),
        "journeys": [
            {k: v for k, v in j.items() if k != "state"}
            for j in acts.journeys(conn, customer_id=customer_id, limit=10)
        ],
        "loyalty": {
            "programme": programme,
            "posted": balances.balance,
            "available": balances.available,
            "tier": tier,
        },
    }
