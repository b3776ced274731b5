"""The live worker: journeys and the dispatcher loop on a background thread of this process
(for `tenure run --live` and `tenure worker`)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable

from tenure.config import Settings
from tenure.runtime.clock import WallClock
from tenure.runtime.engine import Engine
from tenure.runtime.temporal import (
    Temporal,
    connect,
    ensure_server,
)
from tenure.runtime.worker import courier_for, serve
from tenure.store.db import Store
from tenure.workspace import Workspace


class LiveWorker:
    """A worker with its dispatcher loop on a background thread (for `run --live`, `worker`)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        on_tick: Callable[[Counter[str]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.on_tick = on_tick
        self.temporal: Temporal | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> Temporal:
        """Reach (or start) Temporal and run the worker until `stop()`."""
        self.temporal = ensure_server(self.settings.workspace)
        self._thread = threading.Thread(target=self._main, name="tenure-worker", daemon=True)
        self._thread.start()
        self._ready.wait(60)
        if self.error is not None:
            raise self.error
        return self.temporal

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the thread that started us
            self.error = exc
            self._ready.set()

    async def _serve(self) -> None:
        assert self.temporal is not None
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        client = await connect(self.temporal)
        courier = courier_for(self.store, self.settings.workspace, self.settings.channels)
        self._ready.set()
        await serve(
            client,
            self.store,
            courier,
            self.settings.guardrails,
            self._stop,
            on_tick=self.on_tick,
            activity_heartbeat_s=self.settings.activity_heartbeat_s,
            sweep=self._sweep,
            sweep_every_s=self.settings.sweep_s,
        )

    def _sweep(self) -> int:
        """Decide the instants the wall clock has passed (silent customers): the decisions made.
        A pipeline per sweep, so policy promotions and what was learned are picked up."""
        engine = Engine(Workspace.load(self.settings), self.store)
        summary = engine.pipeline(clock=WallClock()).sweep()
        return sum(summary.decisions.values())

    def stop(self, stop_server: bool = True) -> None:
        """Stop the worker (and the dev server if this process started it)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)
        if stop_server and self.temporal is not None:
            self.temporal.stop()

    def wait(self) -> None:
        """Block until the worker stops (Ctrl-C stops it)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)
