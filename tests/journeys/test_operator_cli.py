"""What an operator does: journeys list and show, tasks resolve, dead letters list and retry."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import yaml
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from tenure.channels.adapters import ChannelSettings
from tenure.channels.courier import Courier
from tenure.cli import app
from tenure.config import resolve
from tenure.journeys.library import workspace_library
from tenure.policy.model import parse_policy
from tenure.runtime.dispatch import Dispatcher
from tenure.runtime.pipeline import Pipeline
from tenure.runtime.temporal import time_skipping_server
from tenure.runtime.worker import courier_for, journey_worker
from tenure.store import schema as t
from tenure.store.db import Store
from tests.fixtures.journeys import GUARDRAILS, POLICY, history
from tests.helpers import closed
from tests.receiver import running_receiver

runner = CliRunner()
DESK = parse_policy(
    {
        **POLICY.model_dump(mode="json"),
        "actions": [{**POLICY.actions[0].model_dump(), "journey": "save-desk"}],
    }
)


def cli(ws: Path, *args: str) -> str:
    result = runner.invoke(app, [*args, "--workspace", str(ws)])
    assert result.exit_code == 0, result.output
    return result.output


def test_tasks_resolve_and_escalate_through_the_cli(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    settings = resolve(ws)
    store = Store(settings.database_url)
    events = history("kept") + history("ignored")
    Pipeline(
        store, DESK, guardrails=GUARDRAILS, journeys=workspace_library(ws), clock=closed(events)
    ).run(iter(events), "t")

    async def body() -> None:
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=time_skipping_server()
        )
        courier = courier_for(store, ws, {})
        try:
            async with journey_worker(env.client, store, courier, GUARDRAILS, threads=2):
                dispatcher = Dispatcher(store, env.client)
                await dispatcher.dispatch()
                for _ in range(100):
                    tasks = json.loads(cli(ws, "tasks", "list", "--json"))
                    if len(tasks) == 2:
                        break
                    await asyncio.sleep(0.05)
                by_customer = {task["customer_id"]: task for task in tasks}
                assert {task["queue"] for task in tasks} == {"save-desk"}
                kept = by_customer["kept"]["task_id"]
                out = cli(ws, "tasks", "resolve", kept, "--resolution", "saved", "--by", "ann")
                assert "resolved" in out
                args = ["tasks", "resolve", kept, "--resolution", "x", "--by", "bo"]
                again = runner.invoke(app, [*args, "-w", str(ws)])
                assert again.exit_code == 2 and "already resolved" in again.output
                assert await dispatcher.dispatch() == {"signalled": 1}
                await env.sleep(dt.timedelta(days=4))
                for decision in (kept.split(":")[0], by_customer["ignored"]["decision_id"]):
                    await env.client.get_workflow_handle(decision).result()
        finally:
            await env.shutdown()

    asyncio.run(body())
    journeys = {j["customer_id"]: j for j in json.loads(cli(ws, "journeys", "list", "--json"))}
    assert journeys["kept"]["outcome"] == "saved" and journeys["ignored"]["outcome"] == "lost"
    shown = cli(ws, "journeys", "show", journeys["ignored"]["decision_id"])
    assert "escalate" in shown and "exit: lost" in shown and "Temporal UI" in shown
    # The unanswered task expired, its escalation too; the saved one is resolved by ann.
    everything = json.loads(cli(ws, "tasks", "list", "--status", "all", "--json"))
    states = sorted((task["customer_id"], task["queue"], task["status"]) for task in everything)
    assert states == [
        ("ignored", "save-desk", "expired"),
        ("ignored", "supervisors", "expired"),
        ("kept", "save-desk", "resolved"),
    ]
    with store.reader() as conn:
        assert conn.execute(select(t.journeys.c.status).distinct()).scalars().all() == ["completed"]
    store.close()


def test_dead_letters_are_listed_and_retried(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with running_receiver() as rx:
        rx.always_fail = True
        (ws).mkdir()
        (ws / "tenure.yaml").write_text(
            yaml.safe_dump({"channels": {"hook": {"type": "webhook", "url": rx.url}}})
        )
        settings = resolve(ws)
        store = Store(settings.database_url)
        fast = {"hook": ChannelSettings(type="webhook", url=rx.url, backoff_s=0, jitter_s=0)}
        from tenure.channels.adapters import Message

        courier = Courier(store, fast, ws / "outbox")
        assert courier.deliver(Message("k-1", "d-1", "c-1", "hook", "offer")).status == "dead"
        assert courier.deliver(Message("k-2", "d-2", "c-2", "hook", "offer")).status == "held"
        listed = json.loads(cli(ws, "dlq", "list", "--json"))
        assert [(d["key"], d["status"]) for d in listed["deliveries"]] == [
            ("k-1", "dead"),
            ("k-2", "held"),
        ]
        assert listed["channels"][0]["circuit"] == "open"
        rx.always_fail = False
        out = cli(ws, "dlq", "retry", "k-1")
        assert "delivered: 1" in out
        assert [r["headers"]["Idempotency-Key"] for r in rx.accepted()] == ["k-1"]
        store.close()
