"""Personal data at the edges: kept on ingest, shown per role, erased on request.

Clear values live only in `personal_data`; the event log keeps digests (events/personal.py) and
the audit chain never sees them. Erasing a customer deletes that row, drops the digests from
the customer's events, blanks rejected lines and delivery payloads that held a value, and
records the erasure (who, when, which fields; never the values) in the audit chain. Nothing
the audit chain or the ledger hashes or balances is touched, so both still verify.

The database file itself must forget too: SQLite keeps deleted bytes in free pages (and in its
write-ahead log) until they are reused, so an erasure ends with `VACUUM` and a truncating
checkpoint; PostgreSQL gets a `VACUUM` of the touched tables (dead row versions reclaimed).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from tenure.audit.chain import chain
from tenure.errors import InputError
from tenure.events.personal import id_of
from tenure.store import personal as kept
from tenure.store import repo
from tenure.store.db import Store


def erase(
    store: Store, customer_id: str, by: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Remove a customer's personal data everywhere it is kept; audited, idempotent."""
    if not by.strip():
        raise InputError("--by must name who asked for the erasure")
    now = now or dt.datetime.now(dt.UTC)
    with store.transaction() as conn:
        # Every id of the person: an id merged away erases the one it merged into, and both.
        customer_id = id_of(customer_id)  # an email id is kept as its digest
        customer_id = repo.identities_of(conn, [customer_id]).get(customer_id, customer_id)
        aliases = repo.aliases_of(conn, customer_id)
        values = kept.personal(conn, customer_id)
        if not kept.customer_known(conn, customer_id) and not any(values.values()):
            raise InputError(f"no customer {customer_id!r}")
        secrets = [v for v in values.values() if v]
        kept.delete_personal(conn, customer_id)
        events = kept.redact_profile_events(conn, customer_id)
        # A rejected line is raw input: it cannot be parsed to find the fields, so a line that
        # names the customer or holds one of the values is blanked (its reason is kept).
        needles = [orjson.dumps(c) for c in (customer_id, *aliases)]
        needles += [s.encode() for s in secrets]
        rejects = kept.blank_rejects(conn, needles)
        scrubbed = kept.scrub_deliveries(conn, customer_id, secrets) if secrets else 0
        body = {
            "kind": "customer.erased",
            "customer_id": customer_id,
            "merged_ids": aliases,
            "fields": sorted(f for f, v in values.items() if v),
            "by": by.strip(),
            "at": now.isoformat(),
        }
        seq, head = repo.lock_audit_head(conn)
        repo.append_audit(conn, chain(head, seq + 1, [body]), [("customer.erased", customer_id)])
    kept.forget_on_disk(store)
    return {
        "customer_id": customer_id,
        "fields_erased": body["fields"],
        "events_redacted": events,
        "rejects_blanked": rejects,
        "deliveries_scrubbed": scrubbed,
    }
