"""The Temporal dev server a workspace starts is that workspace's: another listener on the port
is refused rather than shared, and `worker --once` stops the server it started."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tenure.cli import app
from tenure.runtime import temporal
from tenure.runtime.temporal import SERVER_FILE, Temporal, TemporalError, ensure_server


@pytest.fixture
def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def test_a_server_this_workspace_did_not_start_is_refused(
    tmp_path: Path, listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TENURE_TEMPORAL_ADDRESS", raising=False)
    port = listener.getsockname()[1]
    with pytest.raises(TemporalError, match="TENURE_TEMPORAL_ADDRESS=localhost"):
        ensure_server(tmp_path, port=port)
    # The one it started (its pid alive, on that port) is used again.
    (tmp_path / SERVER_FILE).write_text(f"{os.getpid()} {port}\n")
    assert ensure_server(tmp_path, port=port).address == f"localhost:{port}"
    (tmp_path / SERVER_FILE).write_text(f"{os.getpid()} {port + 1}\n")
    with pytest.raises(TemporalError):
        ensure_server(tmp_path, port=port)


def test_worker_once_stops_the_dev_server_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = subprocess.Popen(["sleep", "60"])
    started = Temporal("localhost:1", None, process)
    monkeypatch.setattr(temporal, "ensure_server", lambda *_a, **_k: started)

    async def unreachable(_target: Temporal) -> None:
        raise TemporalError("no server in this test")

    monkeypatch.setattr(temporal, "connect", unreachable)
    result = CliRunner().invoke(app, ["worker", "--once", "-w", str(tmp_path / "ws")])
    assert result.exit_code != 0
    assert process.wait(timeout=10) is not None  # stopped, though the dispatch failed
