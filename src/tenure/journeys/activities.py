"""The journey activities: carry out one command, record where a journey stands.

Each effect is keyed by the command's idempotency key in `deliveries`, and the ones that only
touch the database (grant, compensate, task) commit their effect and their key in one
transaction, so a retried activity finds the key and does nothing. Sends go through the courier
(at most one delivery per key; held behind an open circuit; dead-lettered after the last retry).
A follow-up send of a journey (a reminder) is checked against the customer's consent and the
workspace's contact caps at the moment it goes out, and counts toward those caps afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, assert_never

from temporalio import activity

from tenure.channels.adapters import Message
from tenure.channels.courier import Courier, Receipt
from tenure.features.snapshot import snapshot
from tenure.journeys.inputs import ActInput, JourneyAbout, RecordInput
from tenure.journeys.machine import (
    Command,
    CreateTask,
    Deliver,
    ExpireTask,
    GrantOffer,
    OpenTicket,
    Undo,
)
from tenure.loyalty.ledger import Request, funder_account, member_account
from tenure.observe.logs import bound, get_logger
from tenure.policy.guardrails import (
    CONTACT_MEMORY_S,
    Contact,
    GuardrailSettings,
    cap_block,
    zone,
)
from tenure.runtime.clock import WallClock
from tenure.store import acts, ledger
from tenure.store.acts import utc
from tenure.store.db import Store
from tenure.store.queries import current_states
from tenure.times import Clock, epoch

CRM_CHANNEL = "crm"
PROGRAMME = "default"  # the loyalty programme journeys grant points in
RETENTION_FUNDER = "retention"  # who funds points a retention journey grants
log = get_logger("tenure.activities")


class InFlight(RuntimeError):
    """The message is being sent by someone else right now (retried by Temporal)."""


class JourneyActivities:
    """Activities bound to a store, a courier and the workspace guardrails."""

    def __init__(
        self,
        store: Store,
        courier: Courier,
        guardrails: GuardrailSettings,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.courier = courier
        self.guardrails = guardrails
        self.clock: Clock = clock or WallClock()

    def _now(self) -> float:
        """The clock's time in epoch seconds (this edge counts leases and windows in numbers)."""
        return epoch(self.clock.now())

    @activity.defn(name="tenure.act")
    def act(self, inp: ActInput) -> dict[str, Any]:
        """Carry out one machine command (then record the journey's state, when given)."""
        about, command = inp.about, inp.command
        # Bound for the activity's thread, so the courier's lines carry the journey's ids too.
        with bound(
            correlation_id=about.correlation_id, decision_id=about.decision_id, key=command.key
        ):
            log.info(
                "activity executing",
                command=command.kind,
                step=command.step,
                attempt=activity.info().attempt if activity.in_activity() else 1,
            )
            result = self._act(about, command)
            if inp.record is not None:
                self.record(RecordInput(about.decision_id, inp.record, about.correlation_id))
        return result

    def _act(self, about: JourneyAbout, command: Command) -> dict[str, Any]:
        match command:
            case Deliver():
                return self._deliver(about, command)
            case OpenTicket():
                message = Message(
                    command.key,
                    about.decision_id,
                    about.customer_id,
                    CRM_CHANNEL,
                    "ticket",
                    {"queue": command.queue, "subject": command.subject},
                    kind="ticket",
                )
                return self._receipt(self.courier.deliver(message))
            case CreateTask():
                return self._task(about, command)
            case ExpireTask():
                with self.store.transaction() as conn:
                    closed = acts.close_task(
                        conn, command.task, status="expired", resolved_at=utc(self._now())
                    )
                return {"status": "expired" if closed else "already closed"}
            case GrantOffer():
                grant = command
                return self._once(about, grant, "grant", lambda c: self._grant(c, about, grant))
            case Undo():
                undo = command
                return self._once(about, undo, "compensate", lambda c: self._undo(c, about, undo))
            case _:
                assert_never(command)

    def _deliver(self, about: JourneyAbout, command: Deliver) -> dict[str, Any]:
        message = Message(
            command.key,
            about.decision_id,
            about.customer_id,
            command.channel,
            command.template,
            {**command.payload, "action_id": about.action_id},
        )
        if not command.first:
            blocked = self._guardrail(about.customer_id, command.channel)
            if blocked:
                self._once(about, command, "deliver", lambda conn: "suppressed", blocked)
                return {"status": "suppressed", "error": blocked}
        receipt = self._receipt(self.courier.deliver(message))
        if receipt["status"] == "delivered" and not command.first:
            with self.store.transaction() as conn:
                row = acts.journey(conn, about.decision_id)
                if row is not None:
                    sends = [*row["sends"], [int(self._now()), command.channel]]
                    acts.update_journey(conn, about.decision_id, sends=sends)
        return receipt

    @staticmethod
    def _receipt(receipt: Receipt) -> dict[str, Any]:
        if receipt.status == "in_flight":
            # Another worker holds this message's lease: try again later, by then it is settled.
            raise InFlight(f"{receipt.key} is being sent by another worker")
        return {"status": receipt.status, "error": receipt.error}

    def _guardrail(self, customer_id: str, channel: str) -> str | None:
        """Why a follow-up send must not go out now (consent withdrawn, a cap reached), or None."""
        now = self._now()
        with self.store.reader() as conn:
            # Every known event counts, also those still waiting for the customer's next
            # instant: a consent withdrawn this morning stops this afternoon's reminder.
            known = current_states(conn, [customer_id]).get(customer_id)
            journeys = acts.journeys_of(conn, [customer_id], utc(now - CONTACT_MEMORY_S))
        if known is None:
            return None
        state, memory = known
        features = snapshot(state, utc(now))
        if not features.consented(channel, "marketing"):
            return f"no marketing consent on {channel}"
        # The pipeline folds journey sends into the stored contacts too: count each one once.
        seen = {(int(at), str(ch)) for at, ch in (memory or {}).get("contacts", [])}
        for row in journeys:
            seen.update((int(at), str(ch)) for at, ch in row.sends)
        contacts = [Contact(at, ch) for at, ch in sorted(seen)]
        tz = zone(features.timezone, self.guardrails)
        return cap_block(contacts, channel, utc(now), tz, self.guardrails.caps)

    def _task(self, about: JourneyAbout, command: CreateTask) -> dict[str, Any]:
        at = utc(self._now())
        with self.store.transaction() as conn:
            acts.insert_task(
                conn,
                {
                    "task_id": command.key,
                    "decision_id": about.decision_id,
                    "customer_id": about.customer_id,
                    "queue": command.queue,
                    "reason": command.reason,
                    "status": "open",
                    "created_at": at,
                    "due_at": utc(command.due),
                },
            )
        return {"status": "open"}

    def _once(
        self,
        about: JourneyAbout,
        command: Deliver | GrantOffer | Undo,
        kind: str,
        effect: Callable[[Any], str],
        error: str | None = None,
    ) -> dict[str, Any]:
        """Run a database-only effect exactly once under the command's key."""
        at = utc(self._now())
        with self.store.transaction() as conn:
            row = acts.claim_delivery(
                conn,
                {
                    "key": command.key,
                    "decision_id": about.decision_id,
                    "customer_id": about.customer_id,
                    "kind": kind,
                    "channel": command.channel if isinstance(command, Deliver) else None,
                    "status": "pending",
                    "attempts": 0,
                    "payload": dataclasses.asdict(command),
                    "created_at": at,
                    "updated_at": at,
                },
            )
            if row["status"] != "pending":
                return {"status": row["status"], "duplicate": True}
            status = effect(conn)
            acts.update_delivery(
                conn, command.key, status=status, attempts=1, last_error=error, updated_at=at
            )
        return {"status": status}

    def _grant(self, conn: Any, about: JourneyAbout, command: GrantOffer) -> str:
        """An offer is recorded; points are posted to the member from the retention funder."""
        if command.points:
            now = self._now()
            member = member_account(PROGRAMME, about.customer_id)
            request = Request(
                command.key,
                "accrue",
                funder_account(RETENTION_FUNDER),
                member,
                int(command.points),
                at=now,
                ref=about.decision_id,
            )
            (result,) = ledger.post_in(conn, [request], now)
            if result not in ("ok", "exists"):
                raise RuntimeError(f"the ledger refused the grant: {result}")
            log.info("points granted", points=int(command.points), ledger=result)
        return "granted"

    def _undo(self, conn: Any, about: JourneyAbout, command: Undo) -> str:
        """Revoke the journey's grants (points clawed back as far as the balance allows) and give
        back its reserved budget."""
        if command.grants:
            now = self._now()
            for key, points in acts.granted(conn, list(command.grants)):
                if points:
                    self._claw_back(conn, about, key, points, now)
            acts.revoke_granted(conn, list(command.grants), utc(now))
        period = about.budget_period
        if command.release and period:
            acts.release_budget(conn, about.policy_id, period, float(command.release))
        return "done"

    @staticmethod
    def _claw_back(conn: Any, about: JourneyAbout, key: str, points: int, now: float) -> None:
        """Take back a grant's points, as far as the member's balance allows."""
        member = member_account(PROGRAMME, about.customer_id)
        funder = funder_account(RETENTION_FUNDER)
        book = ledger.load(conn, [], accounts=[member, funder])
        back = min(points, max(0, book.account(member).available))
        if back:
            revoke = Request(
                f"{key}:revoke", "clawback", member, funder, back, at=now, ref=about.decision_id
            )
            ledger.post_in(conn, [revoke], now)

    @activity.defn(name="tenure.task_status")
    def task_status(self, task_id: str) -> dict[str, Any] | None:
        """A task's status and resolution (None when there is no such task)."""
        with self.store.reader() as conn:
            row = acts.task(conn, task_id)
        if row is None:
            return None
        return {"status": row["status"], "resolution": row["resolution"], "by": row["resolved_by"]}

    @activity.defn(name="tenure.record")
    def record(self, inp: RecordInput) -> None:
        """Write where the journey stands to the journeys table (what operators look at)."""
        decision_id, state, correlation_id = inp.decision_id, inp.state, inp.correlation_id
        status = state["status"] if state["status"] in ("completed", "failed") else "running"
        with bound(correlation_id=correlation_id, decision_id=decision_id):
            (log.info if status != "running" else log.debug)(
                f"journey {status}", step=state["step"], outcome=state["outcome"]
            )
        with self.store.transaction() as conn:
            acts.update_journey(
                conn,
                decision_id,
                status=status,
                step=state["step"],
                outcome=state["outcome"],
                state=state,
                updated_at=utc(self._now()),
            )
