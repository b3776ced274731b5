"""End to end in headless Chromium: an operator signs in, finds a customer, reads why a decision
was made, and resolves the human task the customer's journey waits on; the journey, running on
Temporal's time-skipping server, then continues and ends saved.

Debian's chromium and chromedriver (`apt-get install chromium chromium-driver`; .ci/run does it)
are driven by Selenium with the driver's path given, so nothing is downloaded. Without them the
test is skipped, except in CI, where it fails.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from tenure.api.app import create_app
from tenure.api.auth import create_token
from tenure.config import resolve
from tenure.runtime.dispatch import Dispatcher
from tenure.runtime.temporal import time_skipping_server
from tenure.runtime.worker import courier_for, journey_worker
from tenure.store import acts
from tenure.store import schema as t
from tenure.store.db import Store
from tests.fixtures.dashboard import GUARDRAILS, build_workspace

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1400",
)


def _needs_a_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (the README's test command installs it)")
    if missing:
        message = f"the browser test needs {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """The app under uvicorn in a background thread, on a free local port."""

    def __init__(self, app: Any) -> None:
        self.port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _browser(profile: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # The driver's path is given, so Selenium never runs selenium-manager (no downloads).
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    driver.implicitly_wait(5)  # a page that is still loading is waited for, not failed
    try:
        yield driver
    finally:
        driver.quit()


def operator_session(base: str, token: str, task: dict[str, Any], shots: Path) -> None:
    """What the operator does in the browser (synchronous: Selenium)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    customer = task["customer_id"]
    for driver in _browser(shots / "profile"):
        # Signed out, the dashboard sends us to the sign-in page.
        driver.get(f"{base}/dashboard")
        assert "/dashboard/login" in driver.current_url
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.ID, "sign-in").click()
        # The sign-in page's own h1 may still be there as the click navigates: wait for the next.
        WebDriverWait(driver, 10, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: d.find_element(By.TAG_NAME, "h1").text == "Overview"
        )
        driver.save_screenshot(str(shots / "overview.png"))

        # Find the customer by the start of their id, from the search box in the header.
        search = driver.find_element(By.CSS_SELECTOR, "header input[name=q]")
        search.send_keys(customer[:-1])
        search.submit()
        links = driver.find_elements(By.CSS_SELECTOR, "a.customer")
        assert customer in [a.text for a in links]
        next(a for a in links if a.text == customer).click()
        assert driver.find_element(By.ID, "customer-id").text == customer

        # The risk and what drives it.
        why = driver.find_element(By.ID, "risk-why")
        assert why.find_elements(By.CSS_SELECTOR, "table.explanation td code")
        assert "risk" in why.text
        driver.save_screenshot(str(shots / "customer.png"))

        # The decision that sent them to the save desk, and why it was made.
        driver.find_element(By.CSS_SELECTOR, f"a.decision[href$='{task['decision_id']}']").click()
        assert driver.find_element(By.ID, "reason").text.startswith("Reason:")
        explanation = driver.find_element(By.ID, "explanation")
        assert explanation.find_elements(By.CSS_SELECTOR, "table.explanation td code")
        candidates = driver.find_element(By.ID, "candidates").text
        assert "call" in candidates and "chosen" in candidates and "allowed" in candidates
        assert "save-desk" in driver.find_element(By.ID, "journey").text
        driver.save_screenshot(str(shots / "decision.png"))

        # The task queue: resolve this customer's task as saved.
        driver.find_element(By.LINK_TEXT, "Tasks").click()
        row = driver.find_element(By.CSS_SELECTOR, f"tr.task[data-task='{task['task_id']}']")
        Select(row.find_element(By.NAME, "resolution")).select_by_visible_text("saved")
        row.find_element(By.NAME, "by").send_keys("Ann Operator")
        driver.save_screenshot(str(shots / "tasks.png"))
        row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        notice = driver.find_element(By.ID, "notice").text
        assert task["task_id"] in notice and "journey continues" in notice
        driver.implicitly_wait(0)  # absence is checked at once
        assert not driver.find_elements(By.CSS_SELECTOR, f"tr.task[data-task='{task['task_id']}']")


def test_an_operator_finds_a_customer_reads_the_decision_and_resolves_the_task(
    tmp_path: Path,
) -> None:
    _needs_a_browser()
    settings = build_workspace(tmp_path / "ws")
    store = Store(settings.database_url)
    with store.transaction() as conn:
        token = create_token(conn, "operator", None, "e2e", dt.datetime.now(dt.UTC))[1]
    shots = Path(os.environ.get("TENURE_E2E_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)

    async def body() -> None:
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=time_skipping_server()
        )
        courier = courier_for(store, settings.workspace, {})
        try:
            async with journey_worker(env.client, store, courier, GUARDRAILS, threads=2):
                dispatcher = Dispatcher(store, env.client)
                await dispatcher.dispatch()
                # The journeys' first step opens a save-desk task for each called customer.
                with store.reader() as conn:
                    started = len(acts.journeys(conn, limit=1000))
                for _ in range(200):
                    with store.reader() as conn:
                        tasks = acts.tasks(conn)
                    if started and len(tasks) == started:
                        break
                    await asyncio.sleep(0.05)
                assert tasks and len(tasks) == started, (len(tasks), started)
                task = tasks[0]

                with Served(create_app(settings)) as base:
                    await asyncio.to_thread(operator_session, base, token, task, shots)

                with store.reader() as conn:
                    resolved = acts.task(conn, task["task_id"])
                    signal = conn.execute(
                        select(t.outbox.c.kind, t.outbox.c.payload).where(
                            t.outbox.c.idempotency_key == f"{task['task_id']}:resolved"
                        )
                    ).one()
                assert resolved is not None and resolved["status"] == "resolved"
                assert resolved["resolution"] == "saved"
                assert resolved["resolved_by"].startswith("Ann Operator (tok-")
                assert signal.kind == "journey.signal"
                assert signal.payload["observation"]["task"] == task["task_id"]

                # The worker hands the signal to the waiting journey, which thanks and ends.
                assert await dispatcher.dispatch() == {"signalled": 1}
                await env.client.get_workflow_handle(task["decision_id"]).result()
                with store.reader() as conn:
                    journey = acts.journey(conn, task["decision_id"])
                assert journey is not None
                assert (journey["status"], journey["outcome"]) == ("completed", "saved")
        finally:
            await env.shutdown()

    try:
        asyncio.run(body())
    finally:
        store.close()


def test_the_api_docs_render_in_a_browser_from_the_package_alone(tmp_path: Path) -> None:
    """`/docs` lists every operation of /openapi.json with nothing fetched from elsewhere: its
    script runs under a Content-Security-Policy that allows only its own hash and this origin."""
    _needs_a_browser()
    from selenium.webdriver.common.by import By

    with Served(create_app(resolve(tmp_path / "ws"))) as base:
        for driver in _browser(tmp_path / "profile"):
            driver.get(f"{base}/docs")
            driver.find_element(By.CSS_SELECTOR, "#ops details.op")  # waits for the script
            paths = {e.text for e in driver.find_elements(By.CSS_SELECTOR, "#ops summary code")}
            assert {"/v1/events", "/v1/decisions", "/healthz"} <= paths
            assert driver.find_element(By.ID, "title").text.startswith("tenure ")
            assert "Problem" in driver.find_element(By.ID, "schemas").text
            requested = driver.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name)"
            )
            assert requested == [f"{base}/openapi.json"], requested
