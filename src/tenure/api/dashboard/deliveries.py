"""Dead letters and channel circuits: deliveries that failed after their last attempt (and
messages held behind an open circuit), each channel's breaker, and the retry an operator (or
admin) starts from here, one letter or a channel's dead letters at a time.

A retry is the courier's `retry_dead`, which `tenure dlq retry` runs: through an open circuit,
as the operator's trial. From a page it makes one attempt per letter (the dashboard's courier is
built so, see `trial_courier`) rather than the configured retries with their backoff, so the
page answers in seconds; a failure leaves the letter dead with the new error and counts against
the circuit as any failed attempt does.

(No `from __future__ import annotations` here: FastAPI reads the route annotations.)
"""

import datetime as dt
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from tenure.api.dashboard.common import PREFIX, RESOLVE, Pages
from tenure.api.dashboard.lists import PAGE, Listing, answer
from tenure.api.paging import Keyset
from tenure.channels.adapters import ChannelSettings
from tenure.channels.courier import Courier
from tenure.runtime.worker import courier_for
from tenure.store import acts, dashboard_reads
from tenure.store.db import Store

DELIVERIES = Keyset("dashboard-deliveries", (dt.datetime, str))
SHOWN = {"dead": ("dead",), "held": ("held",), "both": ("dead", "held")}
AT_ONCE = 100  # dead letters of a channel retried by one press of its button
COLUMNS = tuple(
    (name, lambda r, name=name: r[name])
    for name in (
        "updated_at",
        "key",
        "channel",
        "kind",
        "status",
        "attempts",
        "last_error",
        "decision_id",
        "customer_id",
        "created_at",
    )
)


def trial_courier(store: Store, workspace: Path, channels: dict[str, ChannelSettings]) -> Courier:
    """The workspace's courier, one attempt per message: a retry pressed on a page."""
    once = {name: s.model_copy(update={"max_attempts": 1}) for name, s in channels.items()}
    return courier_for(store, workspace, once)


def circuits(pages: Pages) -> list[dict[str, Any]]:
    """Each channel's breaker with its dead and held counts (channels with letters but no
    breaker row yet included, closed)."""
    with pages.store.reader() as conn:
        states = {s["channel"]: s for s in acts.channel_states(conn)}
        counts = dashboard_reads.delivery_counts(conn)
    names = sorted(set(states) | {channel for channel, _ in counts})
    return [
        {
            "channel": name,
            "circuit": states.get(name, {}).get("circuit", "closed"),
            "failures": states.get(name, {}).get("failures", 0),
            "opened_at": states.get(name, {}).get("opened_at"),
            "dead": counts.get((name, "dead"), 0),
            "held": counts.get((name, "held"), 0),
        }
        for name in names
    ]


def deliveries(
    pages: Pages,
    request: Request,
    status: str = "dead",
    channel: str = "",
    retried: int = 0,
    delivered: int = 0,
    failed: int = 0,
    cursor: str | None = None,
    limit: int = PAGE,
    format: str = "html",
) -> Response:
    """Dead letters (or held messages), newest first, and each channel's circuit."""
    who = pages.session(request)
    if isinstance(who, Response):
        return who
    if status not in SHOWN:
        return pages.message(request, who, 400, "Filter refused", "status is dead, held or both")
    chosen = channel.strip() or None
    listing = Listing(
        "dead-letters",
        DELIVERIES,
        lambda conn, n, after: dashboard_reads.deliveries_page(
            conn, SHOWN[status], chosen, n, after
        ),
        lambda r: (r["updated_at"], r["key"]),
        COLUMNS,
    )
    notice = None
    if retried:
        rest = retried - delivered - failed
        notice = f"Retried {retried}: {delivered} delivered, {failed} still dead" + (
            f", {rest} not sent (see each letter's status)." if rest > 0 else "."
        )
    render = partial(
        pages.list_page,
        request,
        "deliveries.html",
        who,
        status=status,
        channel=channel.strip(),
        circuits=circuits(pages),
        notice=notice,
        failed=failed,
    )
    return answer(pages, request, who, listing, (cursor, limit, format), render)


def retry(
    pages: Pages,
    request: Request,
    key: Annotated[str, Form()] = "",
    channel: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Deliver a dead letter (or a channel's dead letters) again, through an open circuit."""
    who = pages.form_session(request, csrf, RESOLVE)
    if isinstance(who, Response):
        return who
    if key:
        keys = [key]
    else:
        with pages.store.reader() as conn:
            keys = dashboard_reads.dead_keys(conn, channel, AT_ONCE)
    receipts = pages.courier.retry_dead(keys) if keys else []
    if not receipts:
        what = f"dead letter {key!r}" if key else f"dead letter on channel {channel!r}"
        return pages.message(request, who, 409, "Nothing to retry", f"There is no {what} now.")
    counts = Counter(r.status for r in receipts)
    done = counts["delivered"] + counts["duplicate"]
    # Anything else (skipped for want of an address, another sender's) is neither.
    query = f"retried={len(receipts)}&delivered={done}&failed={counts['dead']}"
    return RedirectResponse(f"{PREFIX}/deliveries?{query}", status_code=303)
