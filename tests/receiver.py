"""A webhook receiver for tests: counts every raw request, answers as scripted."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Records each POST (headers and body) before deciding the reply, so nothing is hidden."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failures_left = 0  # answer 503 this many times first
        self.always_fail = False
        self.lock = threading.Lock()
        self.url = ""

    def accepted(self) -> list[dict[str, Any]]:
        """Requests answered 200."""
        return [r for r in self.requests if r["status"] == 200]

    def keys(self) -> list[str]:
        """Idempotency keys of accepted requests, in arrival order, duplicates kept."""
        return [r["headers"].get("Idempotency-Key") for r in self.accepted()]


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    """A receiver on a free local port for the duration of the block."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                fail = receiver.always_fail or receiver.failures_left > 0
                if receiver.failures_left > 0:
                    receiver.failures_left -= 1
                status = 503 if fail else 200
                receiver.requests.append(
                    {
                        "headers": dict(self.headers),
                        "raw": raw,
                        "body": json.loads(raw),
                        "status": status,
                    }
                )
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
