"""The courier: every delivery goes through it, once, with retries, a breaker and a rate limit.

For each message it
1. claims the idempotency key in `deliveries`; a key already delivered is not sent again (a
   retried activity or a second dispatcher finds it there);
2. holds the message when the channel's circuit is open (status `held`, released when the
   circuit half-opens; nothing is lost);
3. for a channel that reaches a person (email, SMS), composes the letter: the address from the
   personal-data table and the message rendered from its templates, now, in memory only. A
   customer with no address is a recorded `skipped` with the reason (not a retry, not a dead
   letter); a template that does not render is a dead letter naming the file;
4. takes a slot of the channel's per-minute rate;
5. tries the adapter with exponential backoff and jitter (tenacity), and on success records
   `delivered`; after the last attempt records a dead letter (`dead`) for `tenure dlq retry`.

The breaker and the rate window are rows in the database rather than process memory (which is
all pybreaker and friends offer without Redis), so every worker of a deployment sees the same
open circuit and shares one rate limit; that is why they are written here by hand.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from tenure.channels.adapters import (
    Addressed,
    Channel,
    ChannelSettings,
    Letter,
    Message,
    Permanent,
    Retryable,
    make_channel,
)
from tenure.channels.messages import Letters, NoAddress, TemplateError
from tenure.observe import tracing
from tenure.observe.logs import bound, get_logger
from tenure.observe.metrics import SENT
from tenure.runtime.clock import WallClock
from tenure.store import acts
from tenure.store.acts import utc
from tenure.store.db import Store
from tenure.times import Clock, epoch

Status = Literal["delivered", "duplicate", "held", "dead", "in_flight", "skipped"]
# A claimed message is `sending` for this long: another caller meanwhile gets `in_flight` and does
# not send. Longer than any attempt loop (and than the activity's timeout), so only a sender that
# died mid-send lets the message go out again, after the lease: the one at-least-once window.
SEND_LEASE_S = 180.0
log = get_logger("tenure.courier")


@dataclass(frozen=True)
class Receipt:
    """What became of a message."""

    key: str
    status: Status
    attempts: int = 0
    error: str | None = None


class Courier:
    """Delivers messages on named channels; unnamed channels write JSON lines to `outbox_dir`."""

    def __init__(
        self,
        store: Store,
        settings: dict[str, ChannelSettings],
        outbox_dir: Path,
        clock: Clock | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        letters: Letters | None = None,
    ) -> None:
        self.store = store
        # How letters are composed for email and SMS (runtime/worker.py `courier_for` gives a
        # workspace's); without, those channels dead-letter their messages.
        self.letters = letters
        self.settings = settings
        self.outbox_dir = outbox_dir
        self.clock: Clock = clock or WallClock()
        self.sleep = sleep
        self.rng = rng or random.Random()
        self._channels: dict[str, Channel] = {}

    def _now(self) -> float:
        """The clock's time in epoch seconds (this edge counts leases and windows in numbers)."""
        return epoch(self.clock.now())

    def settings_for(self, channel: str) -> ChannelSettings:
        """A channel's settings (a file channel's defaults when it is not configured)."""
        return self.settings.get(channel) or ChannelSettings()

    def adapter(self, channel: str) -> Channel:
        """The adapter of a channel, made once."""
        if channel not in self._channels:
            self._channels[channel] = make_channel(
                channel, self.settings_for(channel), self.outbox_dir
            )
        return self._channels[channel]

    # ------------------------------------------------------------ one message

    def deliver(self, message: Message, force: bool = False) -> Receipt:
        """Deliver once or record why not; `force` tries even through an open circuit."""
        # Inside an activity the journey's correlation id is bound already; the decision id and
        # key are bound here for the held and dead letters sent again outside any journey.
        with (
            bound(decision_id=message.decision_id, key=message.key),
            tracing.tracer.start_as_current_span(
                "tenure.courier.deliver",
                attributes={
                    "tenure.decision_id": message.decision_id,
                    "tenure.key": message.key,
                    "tenure.channel": message.channel,
                    "tenure.kind": message.kind,
                },
            ) as span,
        ):
            receipt = self._deliver(message, force)
            span.set_attribute("tenure.status", receipt.status)
            span.set_attribute("tenure.attempts", receipt.attempts)
            SENT.labels(message.channel, receipt.status).inc()
            fields = {
                "channel": message.channel,
                "kind": message.kind,
                "template": message.template,
                "status": receipt.status,
                "attempts": receipt.attempts,
                "error": receipt.error,
                "forced": force or None,
            }
            if receipt.status == "dead":
                log.warning("delivery dead-lettered", **fields)
            elif receipt.status in ("duplicate", "in_flight"):
                log.debug("delivery already handled", **fields)
            else:
                log.info(f"delivery {receipt.status}", **fields)
            return receipt

    def _deliver(self, message: Message, force: bool) -> Receipt:
        at = utc(self._now())
        with self.store.transaction() as conn:
            row = acts.claim_delivery(
                conn,
                {
                    "key": message.key,
                    "decision_id": message.decision_id,
                    "customer_id": message.customer_id,
                    "kind": message.kind,
                    "channel": message.channel,
                    "status": "pending",
                    "attempts": 0,
                    "payload": asdict(message),
                    "created_at": at,
                    "updated_at": at,
                },
            )
            if row["status"] == "delivered":
                return Receipt(message.key, "duplicate", row["attempts"])
            if row["status"] == "skipped":  # settled: a skip is not tried again
                return Receipt(message.key, "skipped", row["attempts"], row["last_error"])
            leased = row["updated_at"].timestamp() + SEND_LEASE_S > self._now()
            if row["status"] == "sending" and leased:
                return Receipt(message.key, "in_flight", row["attempts"], "another sender has it")
            if not force and not self._circuit_allows(conn, message.channel):
                acts.update_delivery(conn, message.key, status="held", updated_at=at)
                return Receipt(message.key, "held", row["attempts"], "circuit open")
            # Claimed: committed before the first attempt, so a second caller sees the lease.
            acts.update_delivery(conn, message.key, status="sending", updated_at=at)
        letter = self._compose(message)
        if isinstance(letter, Receipt):
            return letter
        self._take_rate_slot(message.channel)
        return self._attempt(message, row["attempts"], letter)

    def _compose(self, message: Message) -> Letter | Receipt | None:
        """The letter of a message to a channel that reaches a person (None for the others), or
        the receipt of why it is not sent: skipped (no address), dead (a template error)."""
        adapter = self.adapter(message.channel)
        if not isinstance(adapter, Addressed):
            return None
        try:
            if self.letters is None:
                raise TemplateError(f"channel {message.channel!r}: this courier has no templates")
            return self.letters.compose(
                self.store,
                message,
                adapter.needs,
                self.settings_for(message.channel),
                self.clock.now(),
            )
        except NoAddress as exc:
            return self._settle(message, "skipped", 0, str(exc))
        except TemplateError as exc:
            return self._settle(message, "dead", 0, str(exc))

    def _settle(self, message: Message, status: Status, attempts: int, error: str) -> Receipt:
        """Record that a message ends (for now) as `status`, and why."""
        with self.store.transaction() as conn:
            acts.update_delivery(
                conn,
                message.key,
                status=status,
                attempts=attempts,
                last_error=error,
                updated_at=utc(self._now()),
            )
        return Receipt(message.key, status, attempts, error)

    def _circuit_allows(self, conn: Any, channel: str) -> bool:
        state = acts.channel_state(conn, channel)
        if state["circuit"] != "open":
            return True
        opened = state["opened_at"].timestamp() if state["opened_at"] else 0.0
        # Half-open: once the open period has passed, let a message through as the trial.
        return self._now() - opened >= self.settings_for(channel).open_for_s

    def _take_rate_slot(self, channel: str) -> None:
        limit = self.settings_for(channel).rate_per_minute
        if limit is None:
            return
        while True:
            now = self._now()
            minute = utc(now - now % 60)
            with self.store.transaction() as conn:
                state = acts.channel_state(conn, channel)
                if state["window_start"] != minute:
                    acts.save_channel_state(conn, channel, window_start=minute, window_count=1)
                    return
                if state["window_count"] < limit:
                    acts.save_channel_state(conn, channel, window_count=state["window_count"] + 1)
                    return
            self.sleep(60 - now % 60 + 0.001)

    def _attempt(self, message: Message, before: int, letter: Letter | None) -> Receipt:
        s = self.settings_for(message.channel)
        adapter = self.adapter(message.channel)
        attempts = 0
        error: str | None = None

        def once() -> None:
            nonlocal attempts, error
            attempts += 1
            try:
                if letter is not None and isinstance(adapter, Addressed):
                    adapter.send_letter(message, letter)
                else:
                    adapter.send(message)
            except (Retryable, Permanent) as exc:
                error = str(exc)
                self._failed_attempt(message.channel)
                raise
            except Exception as exc:  # an adapter bug must not lose the message
                error = f"{type(exc).__name__}: {exc}"
                self._failed_attempt(message.channel)
                raise Permanent(error) from exc

        retrying = Retrying(
            stop=stop_after_attempt(s.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=s.backoff_s, max=s.backoff_max_s, jitter=s.jitter_s
            ),
            retry=retry_if_exception_type(Retryable),
            sleep=self.sleep,
            reraise=False,
        )
        try:
            retrying(once)
        except (RetryError, Permanent):
            return self._settle(message, "dead", before + attempts, error or "failed")
        at = utc(self._now())
        with self.store.transaction() as conn:
            acts.update_delivery(
                conn, message.key, status="delivered", attempts=before + attempts, updated_at=at
            )
            acts.channel_state(conn, message.channel)
            acts.save_channel_state(conn, message.channel, circuit="closed", failures=0)
        return Receipt(message.key, "delivered", before + attempts)

    def _failed_attempt(self, channel: str) -> None:
        threshold = self.settings_for(channel).failure_threshold
        with self.store.transaction() as conn:
            state = acts.channel_state(conn, channel)
            failures = state["failures"] + 1
            opened = failures >= threshold
            if opened and state["circuit"] != "open":
                log.warning("circuit opened", channel=channel, failures=failures)
            acts.save_channel_state(
                conn,
                channel,
                failures=failures,
                circuit="open" if opened else state["circuit"],
                opened_at=utc(self._now()) if opened else state["opened_at"],
            )

    # ------------------------------------------------------------ held and dead letters

    def release_held(self, limit: int = 500) -> list[Receipt]:
        """Send held messages of channels whose circuit lets a trial through, oldest first."""
        receipts: list[Receipt] = []
        with self.store.reader() as conn:
            held = acts.deliveries(conn, ["held"], limit=limit)
        blocked: set[str] = set()
        for row in held:
            channel = row["channel"]
            if channel in blocked:
                continue
            with self.store.transaction() as conn:
                allowed = self._circuit_allows(conn, channel)
            if not allowed:
                blocked.add(channel)
                continue
            receipt = self.deliver(Message(**row["payload"]), force=True)
            receipts.append(receipt)
            if receipt.status == "dead":
                blocked.add(channel)  # the trial failed: the circuit is open again
        return receipts

    def retry_dead(self, keys: list[str] | None = None) -> list[Receipt]:
        """Try dead letters again (all, or these keys), through an open circuit if need be."""
        with self.store.reader() as conn:
            rows = acts.deliveries(conn, ["dead"], limit=100_000)
        if keys is not None:
            wanted = set(keys)
            rows = [r for r in rows if r["key"] in wanted]
        return [self.deliver(Message(**r["payload"]), force=True) for r in rows]
