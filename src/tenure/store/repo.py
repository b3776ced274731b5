"""Reads and writes, each one statement for a whole batch (never one round trip per event)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import msgspec
import orjson
from sqlalchemy import (
    ARRAY,
    Connection,
    String,
    Table,
    any_,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from tenure.audit.chain import ChainedRecord
from tenure.events.envelope import ENVELOPE_FIELDS, Event, payload_record, split_payload
from tenure.store import schema as t

# The event log's columns: the envelope's, and the producer's context (migration 0014).
STORED_FIELDS = (*ENVELOPE_FIELDS, "context")


def _insert(conn: Connection, table: Table) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _among(conn: Connection, column: Any, ids: Sequence[str]) -> Any:
    """`column IN ids` as one bound parameter, not one parameter per id.

    Compiling and binding ten thousand parameters costs more than the lookup itself, so the ids
    travel as one JSON array (SQLite) or one array (PostgreSQL).
    """
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam("ids", list(ids), type_=ARRAY(String)))
    return column.in_(
        select(literal_column("value")).select_from(
            func.json_each(bindparam("ids", orjson.dumps(list(ids)).decode(), type_=String))
        )
    )


def existing_event_ids(conn: Connection, ids: Sequence[str]) -> set[str]:
    """Those of `ids` already in the event log."""
    if not ids:
        return set()
    col = t.events.c.event_id
    return set(conn.execute(select(col).where(_among(conn, col, ids))).scalars())


_encode = msgspec.json.Encoder().encode


def _json_text(obj: Any) -> str:
    # msgspec: like orjson with non-string keys (customer state keys days by number), but faster.
    return _encode(obj).decode()


def _sqlite_time(value: dt.datetime) -> str:
    if value.utcoffset():
        value = value.astimezone(dt.UTC)
    return value.isoformat(" ", "microseconds")[:26]  # drop the "+00:00"


def insert_events(
    conn: Connection, events: Sequence[Event], sent_as: Mapping[str, str] | None = None
) -> None:
    """Append events; an id already present (another worker won the race) is skipped.
    `sent_as`: by event id, the customer id an event was sent with when it is stored under the
    id that id merged into."""
    if not events:
        return
    sent = sent_as or {}
    if conn.dialect.name == "sqlite":
        # The ingest hot path. SQLAlchemy's executemany builds and processes a parameter dict
        # per row, which measured at twice the cost of the insert itself; here rows go to the
        # driver as tuples, with times written in exactly the format SQLAlchemy's SQLite
        # DateTime writes and reads (UTC, "YYYY-MM-DD HH:MM:SS.ffffff").
        sql = (
            f"INSERT INTO events ({', '.join(STORED_FIELDS)}, sent_as) VALUES "
            f"({', '.join('?' * (len(STORED_FIELDS) + 1))}) ON CONFLICT DO NOTHING"
        )
        conn.exec_driver_sql(
            sql,
            [
                (
                    e.event_id,
                    e.type,
                    e.customer_id,
                    _sqlite_time(e.occurred_at),
                    e.source,
                    e.partner_id,
                    e.schema_version,
                    _encode(e.payload if e.extra is None else payload_record(e)).decode(),
                    None if e.context is None else _encode(e.context).decode(),
                    sent.get(e.event_id) if sent else None,
                )
                for e in events
            ],
        )
        return
    conn.execute(
        _insert(conn, t.events).on_conflict_do_nothing(),
        [
            {
                "event_id": e.event_id,
                "type": e.type,
                "customer_id": e.customer_id,
                "occurred_at": e.occurred_at,
                "source": e.source,
                "partner_id": e.partner_id,
                "schema_version": e.schema_version,
                "payload": msgspec.to_builtins(e.payload if e.extra is None else payload_record(e)),
                "context": e.context,
                "sent_as": sent.get(e.event_id),
            }
            for e in events
        ],
    )


def insert_rejects(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Keep rejected input with its reason, under its run; the same line again in the same run
    (a retried batch) is kept once."""
    if rows:
        for row in rows:
            row["raw_sha256"] = hashlib.sha256(row["raw"]).hexdigest()
        conn.execute(_insert(conn, t.rejects).on_conflict_do_nothing(), rows)


def advisory_lock(conn: Connection, name: str) -> None:
    """PostgreSQL: a lock on `name` held until the transaction ends (others wait for it)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"), {"name": name})


def lock_customers(conn: Connection, ids: Sequence[str]) -> None:
    """PostgreSQL: lock these customers' rows, in id order, until the transaction ends.

    Concurrent pipelines then never fold the same customer from the same stored state (the
    last writer would win and lose the other's events), and a customer's events are checked for
    duplicates only once that customer is locked, so two runs of one file store each event
    once. A customer not stored yet gets a placeholder row (version 0, never committed: the
    batch writes over it or `drop_placeholders` removes it) so that it can be locked too.

    One statement takes every lock, row by row in id order: an insert of the new ids that
    touches the existing ones (a no-op update locks them). Two passes (insert the new, then
    SELECT ... FOR UPDATE) could deadlock: a batch holding a new id it inserted would then wait
    for a lower existing id another batch holds while that one waits for the new id. SQLite
    needs none of this: its writers are one at a time (BEGIN IMMEDIATE).
    """
    if conn.dialect.name != "postgresql" or not ids:
        return
    empty = {"state": {}, "memory": {}, "last_seen": None, "version": 0}
    stmt = _insert(conn, t.customers)
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.customers.c.customer_id],
        set_={"version": t.customers.c.version},
    )
    conn.execute(stmt, [{"customer_id": cid, **empty} for cid in sorted(set(ids))])


def drop_placeholders(conn: Connection, ids: Sequence[str]) -> None:
    """Remove placeholder rows `lock_customers` made that the batch did not write over."""
    if conn.dialect.name != "postgresql" or not ids:
        return
    c = t.customers.c
    conn.execute(delete(t.customers).where(_among(conn, c.customer_id, ids), c.version == 0))


def customer_versions(conn: Connection, ids: Sequence[str]) -> dict[str, int]:
    """The stored version of each of `ids` that exists (cheap: no state is decoded)."""
    if not ids:
        return {}
    c = t.customers.c
    query = select(c.customer_id, c.version).where(_among(conn, c.customer_id, ids), c.version > 0)
    return {cid: int(version) for cid, version in conn.execute(query)}


def load_customers(conn: Connection, ids: Sequence[str]) -> dict[str, tuple[Any, Any, int]]:
    """(state record, memory record, version) for each of `ids` that exists."""
    return {cid: row[:3] for cid, row in load_timed_customers(conn, ids).items()}


def load_timed_customers(
    conn: Connection, ids: Sequence[str]
) -> dict[str, tuple[Any, Any, int, int | None]]:
    """(state record, memory record, version, through_s) for each of `ids` that exists."""
    if not ids:
        return {}
    c = t.customers.c
    rows = conn.execute(
        select(c.customer_id, c.state, c.memory, c.version, c.through_s).where(
            _among(conn, c.customer_id, ids), c.version > 0
        )
    )
    return {
        cid: (state, memory, int(version), None if through is None else int(through))
        for cid, state, memory, version, through in rows
    }


def due_customers(conn: Connection, until_s: int, limit: int | None = None) -> list[str]:
    """Customers whose next decision instant is at or before `until_s`, soonest first."""
    c = t.customers.c
    query = select(c.customer_id).where(c.due_s <= until_s, c.version > 0)
    query = query.order_by(c.due_s, c.customer_id)
    if limit is not None:
        query = query.limit(limit)
    return [cid for (cid,) in conn.execute(query)]


def due_step(conn: Connection, floor_s: int, until_s: int, most: int) -> int:
    """How far (at most `until_s`) a sweep can move the watermark deciding at most about `most`
    customers: just short of the due time of the `most + 1`-th customer due, or, when more than
    `most` are due at one instant, that instant (one instant is never split)."""
    c = t.customers.c
    query = select(c.due_s).where(c.due_s <= until_s, c.due_s > floor_s, c.version > 0)
    query = query.order_by(c.due_s).offset(most).limit(1)
    cut = conn.execute(query).scalar()
    if cut is None:
        return until_s
    first = conn.execute(
        select(func.min(c.due_s)).where(c.due_s <= until_s, c.due_s > floor_s, c.version > 0)
    ).scalar()
    return int(cut) - 1 if first is not None and cut > first else int(cut)


def pending_events(conn: Connection, through: Mapping[str, int]) -> dict[str, list[Event]]:
    """Each customer's logged events at or after their `through` time (epoch seconds), in
    event order: what waits for the customer's next instant."""
    from tenure.events.envelope import EVENT_TYPES, event_union

    if not through:
        return {}
    e = t.events.c
    since = dt.datetime.fromtimestamp(min(through.values()), dt.UTC)
    rows = []
    ids = sorted(through)
    for start in range(0, len(ids), 5_000):
        chunk = ids[start : start + 5_000]
        query = (
            select(*(e[name] for name in STORED_FIELDS))
            .where(_among(conn, e.customer_id, chunk), e.occurred_at >= since)
            .order_by(e.occurred_at, e.event_id)
        )
        rows.extend(
            r
            for r in conn.execute(query)
            if int(r.occurred_at.timestamp()) >= through[r.customer_id]
        )
    # Types a workspace registered are in the log too: decoded with their free-form payloads.
    union = event_union(tuple(sorted({r.type for r in rows} - set(EVENT_TYPES))))
    out: dict[str, list[Event]] = {}
    for row in rows:
        out.setdefault(row.customer_id, []).append(_event_of(row, union))
    return out


WATERMARK = "events"


def watermark(conn: Connection) -> tuple[int, int] | None:
    """(newest event time seen, watermark processed to), epoch seconds; None before any."""
    w = t.watermarks.c
    row = conn.execute(select(w.newest_s, w.processed_s).where(w.name == WATERMARK)).first()
    return None if row is None else (int(row[0]), int(row[1]))


def advance_watermark(conn: Connection, newest_s: int, processed_s: int) -> None:
    """Move the watermark forward (never back: a concurrent writer may be ahead)."""
    w = t.watermarks
    stmt = _insert(conn, w).values(name=WATERMARK, newest_s=newest_s, processed_s=processed_s)
    greatest = func.max if conn.dialect.name == "sqlite" else func.greatest
    stmt = stmt.on_conflict_do_update(
        index_elements=[w.c.name],
        set_={
            "newest_s": greatest(w.c.newest_s, stmt.excluded.newest_s),
            "processed_s": greatest(w.c.processed_s, stmt.excluded.processed_s),
        },
    )
    conn.execute(stmt)


def upsert_customers(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Write customers' state and decision memory."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        # Every customer touched by a batch is written back; like event inserts, this skips
        # SQLAlchemy's per-row parameter processing (the JSON is encoded once, here).
        conn.exec_driver_sql(
            "INSERT INTO customers (customer_id, state, memory, last_seen, version, through_s, "
            "due_s) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (customer_id) DO UPDATE SET "
            "state = excluded.state, memory = excluded.memory, last_seen = excluded.last_seen, "
            "version = excluded.version, through_s = excluded.through_s, due_s = excluded.due_s",
            [
                (
                    r["customer_id"],
                    _json_text(r["state"]),
                    _json_text(r["memory"]),
                    _sqlite_time(r["last_seen"]),
                    r["version"],
                    r["through_s"],
                    r["due_s"],
                )
                for r in rows
            ],
        )
        return
    stmt = _insert(conn, t.customers)
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.customers.c.customer_id],
        set_={
            "state": stmt.excluded.state,
            "memory": stmt.excluded.memory,
            "last_seen": stmt.excluded.last_seen,
            "version": stmt.excluded.version,
            "through_s": stmt.excluded.through_s,
            "due_s": stmt.excluded.due_s,
        },
    )
    conn.execute(stmt, rows)


def lock_audit_head(conn: Connection) -> tuple[int, str]:
    """The chain head (seq, hash), locked until the transaction ends."""
    h = t.audit_head.c
    query = select(h.seq, h.hash).where(h.id == 1)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    seq, head = conn.execute(query).one()
    return int(seq), str(head)


def append_audit(
    conn: Connection, records: list[ChainedRecord], kinds: list[tuple[str, str]]
) -> None:
    """Store chained records ((kind, ref) per record) and move the head to the last one."""
    if not records:
        return
    conn.execute(
        t.audit.insert(),
        [
            {
                "seq": r.seq,
                "kind": kind,
                "ref": ref,
                "prev_hash": r.prev_hash,
                "hash": r.hash,
                "body": r.body.decode("utf-8"),
            }
            for r, (kind, ref) in zip(records, kinds, strict=True)
        ],
    )
    last = records[-1]
    conn.execute(
        update(t.audit_head).where(t.audit_head.c.id == 1).values(seq=last.seq, hash=last.hash)
    )


def existing_decision_ids(conn: Connection, ids: Sequence[str]) -> set[str]:
    """Those of `ids` already decided (a decision id names policy, customer and trigger)."""
    if not ids:
        return set()
    col = t.decisions.c.decision_id
    return set(conn.execute(select(col).where(_among(conn, col, ids))).scalars())


def insert_decisions(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Store decisions."""
    if rows:
        conn.execute(t.decisions.insert(), rows)


def insert_outbox(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Queue effects; the idempotency key makes a second write of the same effect a no-op."""
    if rows:
        conn.execute(_insert(conn, t.outbox).on_conflict_do_nothing(), rows)


def save_policy(
    conn: Connection, policy_hash: str, policy_id: str, label: str, content: Mapping[str, Any]
) -> None:
    """Remember a policy version by its content hash (for replay)."""
    conn.execute(
        _insert(conn, t.policies).on_conflict_do_nothing(),
        [
            {
                "policy_hash": policy_hash,
                "policy_id": policy_id,
                "label": label,
                "content": dict(content),
            }
        ],
    )


def policy_content(conn: Connection, policy_hash: str) -> Any | None:
    """The stored content of a policy version."""
    p = t.policies.c
    return conn.execute(select(p.content).where(p.policy_hash == policy_hash)).scalar()


def start_run(conn: Connection, row: dict[str, Any]) -> None:
    """Record the start of a run."""
    conn.execute(t.runs.insert(), [row])


def add_run_counts(
    conn: Connection, run_id: str, counts: Mapping[str, int], finished_at: Any = None
) -> None:
    """Add a batch's counts to its run."""
    r = t.runs.c
    values: dict[str, Any] = {k: getattr(r, k) + v for k, v in counts.items()}
    if finished_at is not None:
        values["finished_at"] = finished_at
    conn.execute(update(t.runs).where(r.run_id == run_id).values(**values))


def audit_records(
    conn: Connection, after_seq: int = 0, page: int = 5_000
) -> Iterator[ChainedRecord]:
    """Every audit record in chain order, read a page at a time."""
    a = t.audit.c
    while True:
        rows = conn.execute(
            select(a.seq, a.prev_hash, a.hash, a.body)
            .where(a.seq > after_seq)
            .order_by(a.seq)
            .limit(page)
        ).all()
        for seq, prev, h, body in rows:
            yield ChainedRecord(int(seq), prev, h, body.encode("utf-8"))
        if len(rows) < page:
            return
        after_seq = int(rows[-1][0])


def audit_body(conn: Connection, kind: str, ref: str) -> str | None:
    """The stored body of the audit record for (kind, ref)."""
    a = t.audit.c
    return conn.execute(select(a.body).where(a.kind == kind, a.ref == ref)).scalar()


def count(conn: Connection, table: Table, *where: Any) -> int:
    """Rows in `table` matching `where`."""
    return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    """Run a query and return plain dicts."""
    return [dict(r._mapping) for r in conn.execute(query)]


def _event_of(row: Any, union: Any) -> Event:
    """A logged event row decoded back into its typed event (extra payload fields, kept as
    sent, go back aside)."""
    data = dict(zip(STORED_FIELDS, row, strict=True))
    data["occurred_at"] = data["occurred_at"].isoformat()
    try:
        return msgspec.convert(data, union, strict=False)  # type: ignore[no-any-return]
    except msgspec.ValidationError:
        if not isinstance(data["payload"], dict):
            raise
        data["payload"], extra = split_payload(data["type"], data["payload"])
        if not extra:
            raise
        data["__extra__"] = extra
        return msgspec.convert(data, union, strict=False)  # type: ignore[no-any-return]


def iter_events(conn: Connection, page: int = 20_000) -> Iterator[Event]:
    """Every event in the log, oldest first, decoded back into typed events."""
    from tenure.events.envelope import event_union

    union = event_union()
    e = t.events.c
    last: tuple[Any, str] | None = None
    while True:
        query = (
            select(*(e[name] for name in STORED_FIELDS))
            .order_by(e.occurred_at, e.event_id)
            .limit(page)
        )
        if last is not None:
            query = query.where(
                (e.occurred_at > last[0]) | ((e.occurred_at == last[0]) & (e.event_id > last[1]))
            )
        rows = conn.execute(query).all()
        for row in rows:
            yield _event_of(row, union)
        if len(rows) < page:
            return
        last = (rows[-1].occurred_at, rows[-1].event_id)


def insert_model(conn: Connection, row: dict[str, Any]) -> None:
    """Register a trained model."""
    conn.execute(t.models.insert(), [row])


def models(conn: Connection) -> list[dict[str, Any]]:
    """Every registered model, newest first, without artifacts."""
    m = t.models.c
    query = select(
        m.version,
        m.algorithm,
        m.status,
        m.created_at,
        m.params,
        m.training_window,
        m.data_fingerprint,
        m.metrics,
    ).order_by(m.created_at.desc(), m.version.desc())
    return rows(conn, query)


def model(conn: Connection, version: str | None = None, status: str | None = None) -> Any:
    """One model row with its artifact, by version or by status (the newest)."""
    m = t.models.c
    query = select(t.models).order_by(m.created_at.desc(), m.version.desc()).limit(1)
    if version is not None:
        query = query.where(m.version == version)
    if status is not None:
        query = query.where(m.status == status)
    return conn.execute(query).first()


def set_model_status(conn: Connection, version: str, status: str) -> None:
    """Move a model to a new status."""
    conn.execute(update(t.models).where(t.models.c.version == version).values(status=status))


def budget_spent(conn: Connection, policy_id: str) -> dict[str, float]:
    """What a policy has reserved per budget period, locked until the transaction ends.

    On PostgreSQL a row lock would leave a period not yet spent in unlocked (two writers could
    both start it from zero), so the policy's budget is locked as a whole by a transaction-level
    advisory lock. SQLite's writers are already one at a time (BEGIN IMMEDIATE).
    """
    b = t.budgets.c
    if conn.dialect.name == "postgresql":
        advisory_lock(conn, f"tenure.budget:{policy_id}")
    query = select(b.period, b.spent).where(b.policy_id == policy_id)
    return {period: float(spent) for period, spent in conn.execute(query)}


def save_budget_spent(conn: Connection, policy_id: str, spent: Mapping[str, float]) -> None:
    """Write a policy's reserved amounts per period."""
    if not spent:
        return
    stmt = _insert(conn, t.budgets)
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.budgets.c.policy_id, t.budgets.c.period],
        set_={"spent": stmt.excluded.spent},
    )
    conn.execute(
        stmt, [{"policy_id": policy_id, "period": p, "spent": v} for p, v in spent.items()]
    )


def identities_of(conn: Connection, ids: Sequence[str]) -> dict[str, str]:
    """The id each of `ids` merged into (only those that were merged away)."""
    if not ids:
        return {}
    i = t.identities.c
    rows = conn.execute(select(i.alias_id, i.customer_id).where(_among(conn, i.alias_id, ids)))
    return {alias: survivor for alias, survivor in rows}


# Rows that belong to a person and move with their id when it merges into another.
_FOLLOW = ("decisions", "journeys", "deliveries", "tasks", "loyalty_accruals", "loyalty_results")


def merge_customer(
    conn: Connection, previous: str, survivor: str, at: dt.datetime, event_id: str
) -> None:
    """Move what the store holds under `previous` to `survivor` (the batch writes the merged
    state): its events (keeping the id they were sent as), decisions, journeys, deliveries,
    tasks, loyalty rows, personal data and tier; and map `previous` (and whatever it had
    absorbed) to `survivor` for every later event."""
    e = t.events.c
    conn.execute(
        update(t.events)
        .where(e.customer_id == previous)
        .values(customer_id=survivor, sent_as=func.coalesce(e.sent_as, previous))
    )
    for name in _FOLLOW:
        table = t.metadata.tables[name]
        conn.execute(
            update(table).where(table.c.customer_id == previous).values(customer_id=survivor)
        )
    for name in ("personal_data", "loyalty_tiers"):
        _move_unless_held(conn, t.metadata.tables[name], previous, survivor)
    i = t.identities
    conn.execute(update(i).where(i.c.customer_id == previous).values(customer_id=survivor))
    row = {"alias_id": previous, "customer_id": survivor, "merged_at": at, "event_id": event_id}
    stmt = _insert(conn, i).values(**row)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[i.c.alias_id], set_={"customer_id": survivor, "merged_at": at}
        )
    )
    conn.execute(delete(t.customers).where(t.customers.c.customer_id == previous))


def _move_unless_held(conn: Connection, table: Table, previous: str, survivor: str) -> None:
    """A one-row-per-customer table: the survivor keeps its own row, else takes the other's."""
    c = table.c
    keys = [k.name for k in table.primary_key.columns if k.name != "customer_id"]
    theirs = conn.execute(select(table).where(c.customer_id == previous)).mappings().all()
    for row in theirs:
        same = [c[k] == row[k] for k in keys]
        held = conn.execute(select(c.customer_id).where(c.customer_id == survivor, *same)).first()
        where = [c.customer_id == previous, *same]
        if held is None:
            conn.execute(update(table).where(*where).values(customer_id=survivor))
        else:
            conn.execute(delete(table).where(*where))


def aliases_of(conn: Connection, customer_id: str) -> list[str]:
    """Every id merged into `customer_id`."""
    i = t.identities.c
    query = select(i.alias_id).where(i.customer_id == customer_id).order_by(i.alias_id)
    return list(conn.execute(query).scalars())
