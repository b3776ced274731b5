"""The Temporal shell: one workflow type runs every journey by interpreting the pure machine.

Workflow id = decision id. The workflow feeds the machine observations (its start, customer
events and task resolutions arriving as the `observe` signal, the deadline of a pause as a
durable timer), carries out the commands it returns as activities, and records where the
journey stands. All decisions about what happens next are the machine's, so a replayed history
takes exactly the same path.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from tenure.journeys.inputs import (
        ActInput,
        JourneyAbout,
        JourneyStart,
        RecordInput,
        SignalObservation,
        observation,
    )
    from tenure.journeys.machine import (
        Command,
        JourneyInput,
        JourneyState,
        JourneyStuck,
        Observation,
        Resolved,
        Start,
        TimerFired,
        step,
    )
    from tenure.journeys.spec import JourneySpec

WORKFLOW = "tenure.journey"
ACT = "tenure.act"
RECORD = "tenure.record"
TASK_STATUS = "tenure.task_status"
# Effects are idempotent by key, so a failed activity is simply tried again, for as long as it
# takes: a channel outage turns into held messages inside the activity, not a failed journey.
# Errors that only a code change can fix are not retried: the journey fails and says why.
_RETRY = RetryPolicy(
    initial_interval=dt.timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=dt.timedelta(minutes=5),
    non_retryable_error_types=["TypeError", "KeyError", "AttributeError", "ValueError"],
)
# Shorter than the courier's send lease (SEND_LEASE_S), so a retry after a worker died finds the
# lease still held and waits rather than sending alongside a sender that is still alive.
_TIMEOUT = dt.timedelta(minutes=2)
# A worker that dies mid-activity is noticed after this long without a heartbeat, not after the
# whole timeout (activities heartbeat while they wait between delivery attempts; nothing else in
# them blocks this long). The retry then finds the effect's key settled and does not redo it.
# The dispatcher sets it per journey from the workspace (`worker: {activity_heartbeat_s: N}`);
# journeys started without it use this.
_HEARTBEAT_S = 40.0
_RECORD_TIMEOUT = dt.timedelta(seconds=30)


@workflow.defn(name=WORKFLOW)
class JourneyWorkflow:
    """Runs one journey to its exit."""

    def __init__(self) -> None:
        self._inbox: list[SignalObservation] = []
        self._state = JourneyState()
        self._heartbeat_s = _HEARTBEAT_S

    @workflow.signal
    def observe(self, signal: SignalObservation) -> None:
        """A customer event or a task resolution for this journey."""
        self._inbox.append(signal)

    @workflow.query
    def state(self) -> dict[str, Any]:
        """Where the journey stands: step, pause, history."""
        return self._state.to_record()

    @workflow.run
    async def run(self, start: JourneyStart) -> dict[str, Any]:
        """Interpret the journey until it exits; return its final state.

        A journey that cannot go on (its spec does not validate, it loops without pausing) is
        recorded as failed and the workflow fails, rather than retrying the same error forever.
        """
        try:
            return await self._run(start)
        except (
            ValidationError,
            JourneyStuck,
            KeyError,
            TypeError,
            ValueError,
            ActivityError,
        ) as exc:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            failed = {**self._state.to_record(), "status": "failed", "outcome": "failed"}
            failed["history"] = [
                *failed["history"],
                {
                    "at": workflow.now().isoformat(),
                    "step": self._state.step or "-",
                    "what": f"failed: {reason}",
                },
            ]
            await workflow.execute_activity(
                RECORD,
                RecordInput(start.decision_id, failed, start.correlation_id),
                start_to_close_timeout=_RECORD_TIMEOUT,
                retry_policy=_RETRY,
            )
            raise ApplicationError(reason, non_retryable=True) from exc

    async def _run(self, start: JourneyStart) -> dict[str, Any]:
        spec = JourneySpec.model_validate(start.journey)
        inp = start.machine_input()
        self._heartbeat_s = float(start.activity_heartbeat_s or _HEARTBEAT_S)
        await self._apply(spec, inp, Start(workflow.now().timestamp()))
        while self._state.status == "running" and self._state.pause is not None:
            pause = self._state.pause
            left = pause.until - workflow.now().timestamp()
            obs: Observation
            try:
                if left <= 0:
                    raise TimeoutError
                await workflow.wait_condition(
                    lambda: bool(self._inbox), timeout=dt.timedelta(seconds=left)
                )
                obs = observation(self._inbox.pop(0))
            except TimeoutError:
                obs = await self._timed_out(pause)
            await self._apply(spec, inp, obs)
        return self._state.to_record()

    async def _timed_out(self, pause: Any) -> Observation:
        """The deadline passed; for a task, a resolution already recorded wins over the timer."""
        if pause.kind == "human":
            task = await workflow.execute_activity(
                TASK_STATUS,
                pause.task,
                start_to_close_timeout=_RECORD_TIMEOUT,
                retry_policy=_RETRY,
            )
            if task and task.get("status") == "resolved":
                return Resolved(
                    workflow.now().timestamp(), pause.task, task["resolution"], task["by"]
                )
        return TimerFired(workflow.now().timestamp(), pause.step, pause.visit)

    async def _apply(self, spec: JourneySpec, inp: JourneyInput, obs: Observation) -> None:
        before = self._state
        self._state, commands = step(spec, inp, self._state, obs)
        # The last command's activity also records the new state: one activity fewer per step.
        record = self._state.to_record()
        for i, command in enumerate(commands):
            await self._carry_out(inp, command, record if i == len(commands) - 1 else None)
        if self._state != before and not commands:
            await workflow.execute_activity(
                RECORD,
                RecordInput(inp.decision_id, self._state.to_record(), inp.correlation_id),
                start_to_close_timeout=_RECORD_TIMEOUT,
                retry_policy=_RETRY,
            )

    async def _carry_out(
        self, inp: JourneyInput, command: Command, record: dict[str, Any] | None
    ) -> None:
        await workflow.execute_activity(
            ACT,
            ActInput(JourneyAbout.of(inp), command, record),
            start_to_close_timeout=_TIMEOUT,
            heartbeat_timeout=dt.timedelta(seconds=self._heartbeat_s),
            retry_policy=_RETRY,
        )
