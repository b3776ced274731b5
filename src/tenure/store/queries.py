"""Read-side queries behind `tenure customers|decisions|rejects|stats|audit`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from tenure.audit.chain import Break, verify
from tenure.features.state import CustomerState, apply_all
from tenure.store import repo
from tenure.store import schema as t


def current_states(conn: Connection, ids: Sequence[str]) -> dict[str, tuple[CustomerState, Any]]:
    """(state, memory) of each of `ids` that exists, with every event known folded in: the
    stored state stops at the customer's last instant, the rest waits in the event log."""
    loaded = repo.load_timed_customers(conn, ids)
    through = {cid: row[3] for cid, row in loaded.items() if row[3] is not None}
    waiting = repo.pending_events(conn, through)
    return {
        cid: (apply_all(CustomerState.from_record(state), waiting.get(cid, [])), memory)
        for cid, (state, memory, _, _) in loaded.items()
    }


def event_time(conn: Connection) -> dt.datetime | None:
    """The newest event time the workspace has seen (where event time has got to)."""
    mark = repo.watermark(conn)
    return None if mark is None else dt.datetime.fromtimestamp(mark[0], dt.UTC)


def customer(conn: Connection, customer_id: str) -> dict[str, Any] | None:
    """A customer's current state (every known event), memory and decision count, or None."""
    c = t.customers.c
    version = conn.execute(select(c.version).where(c.customer_id == customer_id)).scalar()
    found = current_states(conn, [customer_id]).get(customer_id)
    if version is None or found is None:
        return None
    state, memory = found
    return {
        "customer_id": customer_id,
        "state": state,
        "memory": memory,
        "version": version,
        "decisions": repo.count(conn, t.decisions, t.decisions.c.customer_id == customer_id),
    }


def decision_query(customer_id: str | None = None, status: str | None = None) -> Any:
    """The columns a listed decision shows (and its record), optionally of one customer or one
    status; unordered."""
    d = t.decisions.c
    query = select(
        d.decision_id,
        d.mode,
        d.customer_id,
        d.decided_at,
        d.status,
        d.action_id,
        d.channel,
        d.guardrail,
        d.risk,
        d.reason,
        d.policy_id,
        d.trigger_event_id,
        d.audit_seq,
        d.record,
    )
    if customer_id is not None:
        query = query.where(d.customer_id == customer_id)
    if status is not None:
        query = query.where(d.status == status)
    return query


def decision_rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    """Listed decisions from a `decision_query`: the record gives scorer and explanation."""
    out = repo.rows(conn, query)
    for row in out:
        record = row.pop("record")
        row["scorer"] = record["scorer"]
        row["scorer_version"] = record["scorer_version"]
        row["explanation"] = record.get("explanation", [])
    return out


def decisions(
    conn: Connection, customer_id: str | None = None, limit: int = 50, status: str | None = None
) -> list[dict[str, Any]]:
    """Newest decisions first, optionally for one customer or one status."""
    d = t.decisions.c
    query = decision_query(customer_id, status)
    return decision_rows(conn, query.order_by(d.decided_at.desc(), d.decision_id).limit(limit))


def decision_record(conn: Connection, decision_id: str) -> dict[str, Any] | None:
    """The full stored decision record."""
    d = t.decisions.c
    return conn.execute(select(d.record).where(d.decision_id == decision_id)).scalar()


def rejects(conn: Connection, limit: int = 100, run_id: str | None = None) -> list[dict[str, Any]]:
    """Rejected lines, the newest run's first and in input order within a run (so the reasons
    of the latest run of a file come before older ones), with the raw input (or the prefix kept
    of it) shown as text, and the whole input's length and sha256 (None in rows stored before
    they were kept)."""
    r = t.rejects.c
    started = t.runs.c.started_at
    query = select(
        r.id,
        r.run_id,
        r.source,
        r.line_no,
        r.field,
        r.reason,
        r.raw,
        r.input_size,
        r.input_sha256,
        started.label("run_started_at"),
    ).select_from(t.rejects.outerjoin(t.runs, t.runs.c.run_id == r.run_id))
    if run_id is not None:
        query = query.where(r.run_id == run_id)
    order = (started.desc().nulls_last(), r.run_id, r.id)
    out = repo.rows(conn, query.order_by(*order).limit(limit))
    for row in out:
        row["raw"] = bytes(row["raw"]).decode("utf-8", errors="backslashreplace")
    return out


def run_record(conn: Connection, run_id: str | None = None) -> dict[str, Any] | None:
    """A run's record (`run_id` None: the newest run, by start time), or None."""
    r = t.runs.c
    query = select(t.runs)
    if run_id is None:
        query = query.order_by(r.started_at.desc(), r.run_id.desc()).limit(1)
    else:
        query = query.where(r.run_id == run_id)
    found = repo.rows(conn, query)
    return found[0] if found else None


def top_rejects(conn: Connection, run_id: str, n: int = 3) -> list[dict[str, Any]]:
    """A run's most frequent reject reasons: [{field, reason, count}], most frequent first."""
    r = t.rejects.c
    count = func.count().label("count")
    query = (
        select(r.field, r.reason, count)
        .where(r.run_id == run_id)
        .group_by(r.field, r.reason)
        .order_by(count.desc(), r.field, r.reason)
        .limit(n)
    )
    return repo.rows(conn, query)


def stats(conn: Connection) -> dict[str, Any]:
    """Counts of everything the store holds."""
    d = t.decisions.c
    r = t.runs.c
    live = d.mode != "shadow"
    by_status = dict(
        conn.execute(select(d.status, func.count()).where(live).group_by(d.status)).all()
    )
    by_guardrail = dict(
        conn.execute(
            select(d.guardrail, func.count())
            .where(live, d.guardrail.is_not(None))
            .group_by(d.guardrail)
        ).all()
    )
    by_action = dict(
        conn.execute(
            select(d.action_id, func.count())
            .where(live, d.action_id.is_not(None))
            .group_by(d.action_id)
        ).all()
    )
    duplicates = conn.execute(select(func.coalesce(func.sum(r.duplicates), 0))).scalar_one()
    return {
        "events": repo.count(conn, t.events),
        "duplicates": int(duplicates),
        "rejects": repo.count(conn, t.rejects),
        "customers": repo.count(conn, t.customers),
        "decisions": repo.count(conn, t.decisions, live),
        "shadow_decisions": repo.count(conn, t.decisions, d.mode == "shadow"),
        "decisions_by_status": dict(sorted(by_status.items())),
        "actions": dict(sorted(by_action.items())),
        "suppressions": sum(by_guardrail.values()),
        "suppressions_by_guardrail": dict(sorted(by_guardrail.items())),
        "outbox": repo.count(conn, t.outbox),
        "outbox_pending": repo.count(conn, t.outbox, t.outbox.c.dispatched_at.is_(None)),
        "audit_records": repo.count(conn, t.audit),
    }


def verify_audit(conn: Connection) -> tuple[int, Break | None, int]:
    """Recompute the chain and check the decisions table against it.

    Returns (records checked, first break, head seq). Besides every link, it checks that the
    chain head row matches the last record and that each stored decision is exactly the one its
    audit record holds (an edit to the decisions table alone is caught too).
    """
    checked, broken = verify(repo.audit_records(conn))
    head = conn.execute(select(t.audit_head.c.seq, t.audit_head.c.hash)).first()
    if head is None:
        return checked, broken or Break(checked + 1, "the chain head row is missing"), checked
    head_seq, head_hash = int(head[0]), str(head[1])
    if broken is not None:
        return checked, broken, head_seq
    if checked != head_seq:
        return (
            checked,
            Break(
                min(checked, head_seq) + 1,
                f"chain ends at record {checked} but its head says {head_seq}",
            ),
            head_seq,
        )
    if head_seq:
        last = conn.execute(select(t.audit.c.hash).where(t.audit.c.seq == head_seq)).scalar()
        if last != head_hash:
            return (
                checked,
                Break(head_seq, "the chain head's hash does not match the record"),
                head_seq,
            )
    return checked, _check_decisions(conn), head_seq


_DECISION_COLUMNS = (
    "customer_id",
    "status",
    "action_id",
    "channel",
    "guardrail",
    "reason",
    "risk",
    "policy_id",
    "policy_hash",
    "trigger_event_id",
    "mode",
)


def _check_decisions(conn: Connection, page: int = 2_000) -> Break | None:
    """The first decision row that differs from (or is missing from) its audit record."""
    d, a = t.decisions.c, t.audit.c
    audited = repo.count(conn, t.audit, a.kind == "decision")
    stored = repo.count(conn, t.decisions)
    after = 0
    while True:
        rows = conn.execute(
            select(a.seq, a.body, d.record, *(d[c] for c in _DECISION_COLUMNS))
            .select_from(t.audit.outerjoin(t.decisions, d.decision_id == a.ref))
            .where(a.kind == "decision", a.seq > after)
            .order_by(a.seq)
            .limit(page)
        ).all()
        for seq, body, record, *columns in rows:
            if record is None:
                return Break(int(seq), "its decision row is missing from the decisions table")
            decision = orjson.loads(body)["decision"]
            if decision != record:
                return Break(int(seq), "the decisions table differs from this audit record")
            for name, value in zip(_DECISION_COLUMNS, columns, strict=True):
                if decision[name] != value:
                    return Break(int(seq), f"decisions.{name} differs from this audit record")
        if len(rows) < page:
            break
        after = int(rows[-1][0])
    if stored != audited:
        return Break(audited + 1, f"{stored - audited} decision rows have no audit record")
    return None


def audit_body(conn: Connection, decision_id: str) -> dict[str, Any] | None:
    """The audit record body of a decision, parsed."""
    body = repo.audit_body(conn, "decision", decision_id)
    return None if body is None else orjson.loads(body)


def customer_states(conn: Connection) -> list[CustomerState]:
    """Every customer's current state (every known event folded in)."""
    ids = list(
        conn.execute(select(t.customers.c.customer_id).where(t.customers.c.version > 0)).scalars()
    )
    states = current_states(conn, ids)
    return [states[cid][0] for cid in ids if cid in states]


def lift_inputs(
    conn: Connection,
) -> tuple[list[Any], dict[str, list[Any]], Any, list[dict[str, Any]]]:
    """Treated and control decisions, cancellations of those customers, the newest event time,
    and the budget reserved per policy and period."""
    from tenure.policy.lift import Decided

    d, e = t.decisions.c, t.events.c
    rows = conn.execute(
        select(
            d.customer_id, d.decided_at, d.policy_id, d.policy_hash, d.action_id, d.record, d.risk
        )
        .where(d.mode.in_(("live", "canary")))
        .where((d.status == "action") | (d.guardrail == "control_group"))
    ).all()
    decided = [
        Decided(
            cid,
            at,
            pid,
            ph,
            action,
            float(rec.get("cost", 0.0)),
            float(risk),
            rec.get("segment"),
            "segment" in rec,
        )
        for cid, at, pid, ph, action, rec, risk in rows
    ]
    cancels: dict[str, list[Any]] = {}
    for cid, at in conn.execute(
        select(e.customer_id, e.occurred_at).where(e.type == "subscription.cancelled")
    ):
        cancels.setdefault(cid, []).append(at)
    observed = conn.execute(select(func.max(e.occurred_at))).scalar()
    budgets = repo.rows(conn, select(t.budgets).order_by(t.budgets.c.policy_id, t.budgets.c.period))
    return decided, cancels, observed, budgets


def segments(conn: Connection, customer_ids: Sequence[str]) -> dict[str, str | None]:
    """Each customer's current segment (from the state's registers)."""
    out: dict[str, str | None] = {}
    for cid, (state, _, _) in repo.load_customers(conn, list(customer_ids)).items():
        register = (state.get("registers") or {}).get("segment")
        out[cid] = register[2] if register else None
    return out


# ---------------------------------------------------------------- the dashboard's reads


def customers_by_prefix(conn: Connection, prefix: str, limit: int = 50) -> list[str]:
    """Customer ids starting with `prefix`, in order, read from the primary key's index.

    SQLite: a range on the key (its LIKE is case-insensitive and skips the index). PostgreSQL:
    LIKE 'prefix%' with the wildcards escaped, which its planner turns into the same range
    where the collation allows.
    """
    c = t.customers.c
    query = select(c.customer_id)
    if prefix and conn.dialect.name == "sqlite":
        after = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # the first string past every match
        query = query.where(c.customer_id >= prefix, c.customer_id < after)
    elif prefix:
        query = query.where(c.customer_id.startswith(prefix, autoescape=True))
    return list(conn.execute(query.order_by(c.customer_id).limit(limit)).scalars())


def customer_events(conn: Connection, customer_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """A customer's events, newest first (by event time)."""
    e = t.events.c
    query = (
        select(e.event_id, e.type, e.occurred_at, e.source, e.partner_id, e.payload, e.context)
        .where(e.customer_id == customer_id)
        .order_by(e.occurred_at.desc(), e.event_id)
        .limit(limit)
    )
    return repo.rows(conn, query)


def _utc_day(conn: Connection, column: Any) -> Any:
    """A time column as its UTC day, 'YYYY-MM-DD', on either backend."""
    if conn.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)  # SQLite keeps UTC times as naive text


def per_day(conn: Connection, what: str, days: int = 30) -> list[tuple[str, int]]:
    """Events ("events", by event time) or live decisions ("decisions") per UTC day, for the
    `days` days up to the newest one (days with none included, as 0)."""
    if what == "events":
        table, column, where = t.events, t.events.c.occurred_at, []
    else:
        d = t.decisions.c
        table, column, where = t.decisions, d.decided_at, [d.mode != "shadow"]
    newest = conn.execute(select(func.max(column)).where(*where)).scalar()
    if newest is None:
        return []
    first = newest.replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=days - 1)
    day = _utc_day(conn, column)
    counts = dict(
        conn.execute(
            select(day, func.count())
            .select_from(table)
            .where(column >= first, *where)
            .group_by(day)
        ).all()
    )
    every = [f"{first + dt.timedelta(days=i):%Y-%m-%d}" for i in range(days)]
    return [(k, int(counts.get(k, 0))) for k in every]


def policy_transitions(conn: Connection, versions: Sequence[str]) -> list[dict[str, Any]]:
    """The lifecycle of these policy versions: their transition audit records, oldest first."""
    if not versions:
        return []
    a = t.audit.c
    query = (
        select(a.seq, a.body)
        .where(a.ref.in_(list(versions)), a.kind == "policy.transition")
        .order_by(a.seq)
    )
    return [{"seq": int(seq), **orjson.loads(body)} for seq, body in conn.execute(query)]


def decision_tasks(conn: Connection, decision_id: str) -> list[dict[str, Any]]:
    """The human tasks a decision's journey opened, oldest first."""
    k = t.tasks.c
    query = select(t.tasks).where(k.decision_id == decision_id).order_by(k.created_at, k.task_id)
    return repo.rows(conn, query)


def tier(conn: Connection, programme: str, customer_id: str) -> str | None:
    """A member's current tier in a programme (None: not yet placed)."""
    lt = t.loyalty_tiers.c
    return conn.execute(
        select(lt.tier).where(lt.programme == programme, lt.customer_id == customer_id)
    ).scalar()


def decision_outcomes(conn: Connection) -> list[dict[str, Any]]:
    """Every decision's customer, time, status, action, guardrail, risk and trigger, in
    customer and time order (what `policy diff` compares)."""
    d = t.decisions.c
    return repo.rows(
        conn,
        select(
            d.customer_id,
            d.decided_at,
            d.status,
            d.action_id,
            d.guardrail,
            d.risk,
            d.trigger_event_id,
        ).order_by(d.customer_id, d.decided_at, d.trigger_event_id),
    )
