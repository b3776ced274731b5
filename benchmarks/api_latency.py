"""Single-event POST /v1/events at a steady rate against `tenure serve` on the embedded default.

Starts the service in a temporary workspace (SQLite), creates an ingest token, sends one event per
request at the given rate for the given time, and prints p50/p95/p99 latency and the rate reached.

    python benchmarks/api_latency.py [--rate 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    """Print latency percentiles of single-event ingestion at a steady rate."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        env = {**os.environ, "TENURE_WORKSPACE": str(ws)}
        token = subprocess.run(
            [sys.executable, "-m", "tenure", "tokens", "create", "--role", "ingest"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "tenure", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
                for _ in range(100):
                    try:
                        if client.get("/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.1)
                n = int(args.rate * args.seconds)
                latencies = []
                start = time.perf_counter()
                for i in range(n):
                    due = start + i / args.rate
                    if (wait := due - time.perf_counter()) > 0:
                        time.sleep(wait)
                    body = [
                        {
                            "event_id": f"b{i}",
                            "type": "usage" if i % 10 else "payment.failed",
                            "customer_id": f"c{i % 500}",
                            "occurred_at": "2026-03-01T10:00:00Z",
                            "payload": {} if i % 10 else {"amount": 10.0},
                        }
                    ]
                    t0 = time.perf_counter()
                    r = client.post("/v1/events", json=body)
                    latencies.append(time.perf_counter() - t0)
                    r.raise_for_status()
                elapsed = time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(10)
    ms = np.array(latencies) * 1000
    print(f"{n} single-event requests at a target of {args.rate:g}/s ({n / elapsed:.1f}/s reached)")
    print(
        f"  p50 {np.percentile(ms, 50):6.2f} ms   p95 {np.percentile(ms, 95):6.2f} ms   "
        f"p99 {np.percentile(ms, 99):6.2f} ms   max {ms.max():6.2f} ms"
    )


if __name__ == "__main__":
    main()
