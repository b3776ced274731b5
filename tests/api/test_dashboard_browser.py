"""End to end in headless Chromium: an operator signs in, finds a customer, reads why a decision
was made, and resolves the human task the customer's journey waits on; the journey, running on
Temporal's time-skipping server, then continues and ends saved. Then the list pages: an operator
filters, pages and exports the customers worth saving, decisions and journeys and retries a dead
letter; a policy's author cannot promote it, a second approver does; an admin checks a model's
drift and makes it active.

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
from tenure.services import policies
from tenure.store import acts
from tenure.store import schema as t
from tenure.store.db import Store
from tests.fixtures.dashboard import (
    GUARDRAILS,
    build_workspace,
    dead_letters,
    draft,
    trained_models,
)

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


def _browser(profile: Path, downloads: Path | None = None) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if downloads is not None:
        prefs = {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
        }
        options.add_experimental_option("prefs", prefs)
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


# ---------------------------------------------------------------- the list pages


def _sign_in(driver: Any, base: str, token: str, page: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/dashboard/login")
    driver.find_element(By.ID, "token").send_keys(token)
    _go(driver, driver.find_element(By.ID, "sign-in"))
    assert driver.find_element(By.TAG_NAME, "h1").text.startswith(page)


def _sign_out(driver: Any) -> None:
    from selenium.webdriver.common.by import By

    _go(driver, driver.find_element(By.CSS_SELECTOR, "header .me button"))
    assert "/dashboard/login" in driver.current_url


def _go(driver: Any, element: Any) -> None:
    """Click something that loads a page, and wait until the new page is there (its root
    element is another one; while the old page goes, looking may fail, and is tried again)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html").id
    element.click()
    WebDriverWait(driver, 10, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.find_element(By.TAG_NAME, "html").id != old
    )


def _rows(driver: Any, selector: str, attribute: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.get_attribute(attribute) for e in driver.find_elements(By.CSS_SELECTOR, selector)]


def _downloaded(folder: Path, name: str) -> list[dict[str, str]]:
    """The rows of a CSV the browser saved (waiting for the download to finish)."""
    import csv

    deadline = time.monotonic() + 15
    path = folder / name
    while not path.is_file() or any(folder.glob("*.crdownload")):
        assert time.monotonic() < deadline, sorted(p.name for p in folder.iterdir())
        time.sleep(0.05)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    path.unlink()
    return rows


def _filter(driver: Any, choices: dict[str, str]) -> None:
    """Set a list page's filters (selects by visible text, inputs typed: a date as the digits of
    its US-English field, mmddyyyy) and show."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    for name, value in choices.items():
        field = driver.find_element(By.ID, f"f-{name}")
        if field.tag_name == "select":
            Select(field).select_by_visible_text(value)
        else:
            if field.get_attribute("value"):
                field.clear()
            field.send_keys(value)
    _go(driver, driver.find_element(By.ID, "filter"))


def operator_lists(driver: Any, base: str, token: str, shots: Path, downloads: Path) -> None:
    """Worth saving, decisions, journeys: filter, page, export; then retry a dead letter."""
    from selenium.webdriver.common.by import By

    _sign_in(driver, base, token, "Overview")
    assert driver.find_element(By.ID, "me").text.startswith("Olga Operator")

    # Customers most worth saving: a segment, then page through it ten at a time.
    _go(driver, driver.find_element(By.LINK_TEXT, "Worth saving"))
    _filter(driver, {"segment": "smb"})
    assert "segment=smb" in driver.current_url
    driver.get(driver.current_url + "&limit=8")
    first = _rows(driver, "tr.saving", "data-customer")
    assert len(first) == 8
    driver.save_screenshot(str(shots / "saving.png"))
    _go(driver, driver.find_element(By.CSS_SELECTOR, "a.next-page"))
    second = _rows(driver, "tr.saving", "data-customer")
    assert second and not set(first) & set(second)
    driver.find_element(By.CSS_SELECTOR, "a.export").click()
    exported = _downloaded(downloads, "worth-saving.csv")
    assert [r["customer_id"] for r in exported][:16] == first + second
    assert {r["segment"] for r in exported} == {"smb"}

    # Decisions: suppressed ones from a day on, a page at a time, exported.
    _go(driver, driver.find_element(By.LINK_TEXT, "Decisions"))
    _filter(driver, {"status": "suppressed", "since": "02012026"})
    assert "status=suppressed" in driver.current_url and "since=2026-02-01" in driver.current_url
    shown = driver.find_elements(By.CSS_SELECTOR, "tr.decision-row")
    assert shown and all("suppressed" in row.text for row in shown)
    driver.save_screenshot(str(shots / "decisions.png"))
    driver.find_element(By.CSS_SELECTOR, "a.export").click()
    exported = _downloaded(downloads, "decisions.csv")
    assert len(exported) == len(shown) and {r["status"] for r in exported} == {"suppressed"}

    # Journeys: by state and age.
    _go(driver, driver.find_element(By.LINK_TEXT, "Journeys"))
    _filter(driver, {"status": "pending", "older": "40", "younger": "50"})
    journeys = _rows(driver, "tr.journey", "data-decision")
    assert journeys
    driver.save_screenshot(str(shots / "journeys.png"))

    # A dead letter, retried through the open circuit.
    _go(driver, driver.find_element(By.LINK_TEXT, "Dead letters"))
    assert "open" in driver.find_element(By.CSS_SELECTOR, "tr.circuit").text
    letters = _rows(driver, "tr.letter", "data-key")
    assert len(letters) == 2
    driver.save_screenshot(str(shots / "dead-letters.png"))
    row = driver.find_element(By.CSS_SELECTOR, f"tr.letter[data-key='{letters[0]}']")
    _go(driver, row.find_element(By.CSS_SELECTOR, "form.retry button"))
    assert "Retried 1: 1 delivered" in driver.find_element(By.ID, "notice").text
    assert _rows(driver, "tr.letter", "data-key") == letters[1:]
    _sign_out(driver)


def approvers_promote(
    driver: Any, base: str, tokens: dict[str, str], version: str, shots: Path
) -> None:
    """The version's author is refused; a second approver promotes it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    def move(to: str) -> None:
        row = driver.find_element(By.CSS_SELECTOR, f"tr.version[data-version='{version}']")
        Select(row.find_element(By.NAME, "to")).select_by_visible_text(to)
        _go(driver, row.find_element(By.CSS_SELECTOR, "form.promote button"))

    _sign_in(driver, base, tokens["ana"], "Policies")
    move("active")
    assert "ana wrote this version" in driver.find_element(By.ID, "promote-error").text
    _sign_out(driver)
    _sign_in(driver, base, tokens["bo"], "Policies")
    assert driver.find_element(By.ID, "me").text.startswith("bo")
    move("active")
    assert f"Version {version[:12]} moved" in driver.find_element(By.ID, "notice").text
    row = driver.find_element(By.CSS_SELECTOR, f"tr.version[data-version='{version}']")
    assert "active" in row.text and "by bo" in row.text
    driver.save_screenshot(str(shots / "policies.png"))
    _sign_out(driver)


def admin_models(driver: Any, base: str, token: str, version: str, shots: Path) -> None:
    """An admin reads a model's figures, checks its drift and makes it active."""
    from selenium.webdriver.common.by import By

    _sign_in(driver, base, token, "Overview")
    driver.save_screenshot(str(shots / "overview-charts.png"))
    _go(driver, driver.find_element(By.LINK_TEXT, "Models"))
    row = driver.find_element(By.CSS_SELECTOR, f"tr.model[data-version='{version}']")
    assert "candidate" in row.text
    assert driver.find_elements(By.CSS_SELECTOR, "#reliability svg circle.bin")
    _go(driver, row.find_element(By.CSS_SELECTOR, "button.drift"))
    assert "score" in driver.find_element(By.ID, "drift").text
    row = driver.find_element(By.CSS_SELECTOR, f"tr.model[data-version='{version}']")
    _go(driver, row.find_element(By.CSS_SELECTOR, "form.promote-model button"))
    assert f"{version} is the active model now" in driver.find_element(By.ID, "notice").text
    driver.save_screenshot(str(shots / "models.png"))
    _sign_out(driver)


def test_operators_and_approvers_use_the_list_pages(tmp_path: Path) -> None:
    _needs_a_browser()
    settings = build_workspace(tmp_path / "ws")
    store = Store(settings.database_url)
    dead_letters(store, 2)
    version = draft(store, "ana")
    model = trained_models(store, 1)[0]
    now = dt.datetime.now(dt.UTC)
    with store.transaction() as conn:
        tokens = {
            name: create_token(conn, role, None, name, now)[1]
            for name, role in (
                ("Olga Operator", "operator"),
                ("ana", "approver"),
                ("bo", "approver"),
                ("Ada Admin", "admin"),
            )
        }
    shots = Path(os.environ.get("TENURE_E2E_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    try:
        with Served(create_app(settings)) as base:
            for driver in _browser(tmp_path / "profile", downloads):
                operator_lists(driver, base, tokens["Olga Operator"], shots, downloads)
                approvers_promote(driver, base, tokens, version, shots)
                admin_models(driver, base, tokens["Ada Admin"], model, shots)
        with store.reader() as conn:
            listed = {v["policy_hash"]: v for v in policies.listing(conn)}
            delivered = acts.deliveries(conn, ["delivered"])
        assert (listed[version]["status"], listed[version]["approved_by"]) == ("active", "bo")
        assert len(delivered) == 1
    finally:
        store.close()
