"""The console in a real browser: Debian's headless Chromium, driven by Selenium through
Debian's chromedriver, against the real service (uvicorn on a free port, the test database,
the test Redis). Flows: log in with TOTP and read the dashboard; back-test a draft and
schedule it as a second administrator; decide a flagged credit; download a report.
Screenshots of the main pages go to test-artifacts/console/ (CARBON_POINTS_TEST_ARTIFACTS to
change).

Without a browser (`apt-get install chromium chromium-driver`, as .ci/run does) these tests
are skipped, with the reason in pytest's summary.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from service import audit
from service.admin import service as admins
from service.admin import totp
from service.config import Settings
from service.methodologies import lifecycle
from service.models import AdminAuditEntry, MethodologyDraft, ReviewFlag
from service.reports import service as reports
from tests.admin.test_lifecycle import metro_v2
from tests.console.conftest import PASSWORD
from tests.crediting.conftest import Live, metro
from tests.review.test_review_queue import _flagged_credit

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = (
    Path(os.environ.get("CARBON_POINTS_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "console"
)
CHROMIUM = os.environ.get("CHROMIUM_BINARY") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = (
    os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
)


def _missing_browser() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM}: apt-get install chromium chromium-driver"
    if not (os.path.isfile(CHROMEDRIVER) and os.access(CHROMEDRIVER, os.X_OK)):
        return f"no chromedriver at {CHROMEDRIVER}: apt-get install chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: make install"
    return None


MISSING = _missing_browser()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"browser tests skipped: {MISSING}")

if MISSING is None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Server:
    base_url: str
    log: Path


@pytest.fixture(scope="module")
def server(app: FastAPI, test_settings: Settings) -> Iterator[Server]:
    """The real service, as `carbon-points serve` runs it: uvicorn in its own process, on a
    free port, with the test database and Redis and the test app's secrets (so that
    administrators enrolled here have TOTP secrets the server derives the same way)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    secrets = app.state.secrets
    env = {
        **os.environ,
        "DATABASE_URL": str(test_settings.database_url),
        "REDIS_URL": str(test_settings.redis_url),
        "CARBON_POINTS_ENVIRONMENT": "test",
        "CARBON_POINTS_JWT_SIGNING_KEY": secrets.jwt_signing_key,
        "CARBON_POINTS_PARTNER_SECRET_KEY": secrets.partner_secret_key,
        "CARBON_POINTS_IDENTIFIER_PEPPER": secrets.identifier_pepper,
        "CARBON_POINTS_LOG_FORMAT": "console",
    }
    log = ARTIFACTS / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "service.app:create_app_from_environment",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    # `localhost`: a browser keeps Secure cookies from http://localhost (a secure context), so
    # the console's cookies are exactly those of production.
    base_url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: see {log}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start within 60 s: see {log}")
            time.sleep(0.2)
        yield Server(base_url, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _driver(downloads: Path, language: str = "en-US,en") -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        f"--lang={language.split(',')[0]}",
    ):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {
            "intl.accept_languages": language,
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
        },
    )
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    driver = _driver(tmp_path)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass(frozen=True)
class Who:
    login: str
    admin_id: uuid.UUID
    secret: str


async def _enrol(live: Live, *roles: str) -> Who:
    key = live.app.state.secrets.partner_secret_key
    async with live.sessionmaker() as session, session.begin():
        enrolled = await admins._enrol(
            session,
            key,
            login=f"browser-{uuid.uuid4().hex[:6]}",
            display_name="浏览器测试 Browser tester",
            password=PASSWORD,
            roles=list(roles),
        )
    admin = enrolled.admin
    return Who(admin.login, admin.id, totp.derive_secret(key, admin.id, admin.totp_salt))


@dataclass(frozen=True)
class Seeded:
    partner_name: str
    events: int


async def _seed(live: Live) -> Seeded:
    """A metro partner whose riders' trips are credited today, over signed HTTP."""
    suffix = uuid.uuid4().hex[:6]
    partner = await live.partner(f"metro-{suffix}", ("transit.metro",))
    riders = [await live.participant() for _ in range(3)]
    for n, rider in enumerate(riders):
        await live.link(rider, partner, f"card-{suffix}-{n}")
    events = [
        metro(
            f"trip-{suffix}-{n}",
            card=f"card-{suffix}-{n % 3}",
            occurred_at=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30 + n),
        )
        for n in range(5)
    ]
    async with live.client(partner) as client:
        outcomes = await client.submit_events(events)
    assert all(o.status == "credited" for o in outcomes), outcomes
    async with live.sessionmaker() as session:
        name = (
            (
                await reports.reductions(
                    session,
                    start=datetime.now(UTC) - timedelta(days=1),
                    end=datetime.now(UTC) + timedelta(minutes=1),
                    zone=SHANGHAI,
                )
            )
            .rows[0]
            .partner_name
        )
    return Seeded(name, len(events))


def _wait(driver: WebDriver, seconds: float = 20) -> Any:
    return WebDriverWait(driver, seconds)


def _shot(driver: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def _log_in(driver: WebDriver, server: Server, who: Who, *, screenshot: str | None = None) -> None:
    driver.get(f"{server.base_url}/admin")
    _wait(driver).until(ec.presence_of_element_located((By.ID, "totp")))
    assert "/admin/login" in driver.current_url
    driver.find_element(By.ID, "login").send_keys(who.login)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    # The code of the current 30-second step, typed as a person reads it from their phone.
    driver.find_element(By.ID, "totp").send_keys(totp.code_at(who.secret, datetime.now(UTC)))
    if screenshot:
        _shot(driver, screenshot)
    driver.find_element(By.ID, "sign-in").click()
    _wait(driver).until(lambda d: "/admin/login" not in d.current_url)
    cookie = driver.get_cookie("cp_console")
    assert cookie is not None
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["secure"]


def _downloaded(folder: Path, seconds: float = 20) -> list[Path]:
    """The CSV files the browser finished writing into `folder`, waiting for the first."""
    deadline = time.monotonic() + seconds
    while True:
        files = [p for p in folder.glob("*.csv") if p.stat().st_size > 0]
        if files or time.monotonic() > deadline:
            return files
        time.sleep(0.2)


def _rendered(driver: WebDriver, canvas_id: str) -> dict[str, Any]:
    """The chart Chart.js drew on the canvas: its type and data (labels, datasets)."""
    _wait(driver).until(
        lambda d: d.find_element(By.ID, canvas_id).get_attribute("data-rendered") == "true"
    )
    chart: dict[str, Any] = driver.execute_script(
        "const c = Chart.getChart(document.getElementById(arguments[0]));"
        "return {type: c.config.type, labels: c.data.labels,"
        " datasets: c.data.datasets.map(d => ({label: d.label, data: d.data}))};",
        canvas_id,
    )
    return chart


async def test_log_in_with_totp_and_read_the_dashboard(
    live: Live, server: Server, browser: WebDriver
) -> None:
    seeded = await _seed(live)
    who = await _enrol(live, "auditor", "program-admin")
    await asyncio.to_thread(_log_in, browser, server, who, screenshot="login")
    assert browser.current_url.endswith("/admin/dashboard")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Dashboard"
    hours = _rendered(browser, "chart-hours")
    assert len(hours["labels"]) == 24
    assert sum(hours["datasets"][0]["data"]) == seeded.events
    assert browser.find_element(By.ID, "events-today").text == str(seeded.events)
    reductions = _rendered(browser, "chart-reductions")
    assert len(reductions["labels"]) == 12
    assert reductions["datasets"][0]["data"][-1] > 0  # this month's kilograms
    points = _rendered(browser, "chart-points")
    outstanding = next(d for d in points["datasets"] if d["label"] == "Outstanding")["data"]
    issued = next(d for d in points["datasets"] if d["label"] == "Issued")["data"]
    shown = int(browser.find_element(By.ID, "outstanding").text.replace(",", ""))
    assert outstanding[-1] == shown == issued[-1] > 0  # everything was issued this month
    assert outstanding[0] == 0
    _shot(browser, "dashboard")
    for page in ("organisations", "audit"):
        browser.get(f"{server.base_url}/admin/{page}")
        _wait(browser).until(ec.presence_of_element_located((By.TAG_NAME, "table")))
        _shot(browser, page)
    assert "admin.login" in browser.find_element(By.ID, "audit").text


async def test_back_test_a_draft_and_schedule_it_as_a_second_administrator(
    live: Live, server: Server, browser: WebDriver
) -> None:
    seeded = await _seed(live)
    author = await _enrol(live, "methodology-author")
    approver = await _enrol(live, "methodology-approver")
    async with live.sessionmaker() as session, session.begin():
        draft = await lifecycle.create_draft(
            session,
            audit.Actor(author.admin_id, author.login, "methodology-author", "test"),
            metro_v2(),
        )
    await asyncio.to_thread(_log_in, browser, server, approver)
    browser.get(f"{server.base_url}/admin/methodologies")
    _shot(browser, "methodologies")
    browser.find_element(By.LINK_TEXT, str(draft.id)).click()
    _wait(browser).until(ec.presence_of_element_located((By.ID, "run-backtest")))
    assert "claim_window_days: 7 -> 10" in browser.find_element(By.ID, "diff").text

    browser.find_element(By.ID, "run-backtest").click()  # htmx: the result replaces a div
    summary = _wait(browser, 60).until(ec.presence_of_element_located((By.ID, "backtest-summary")))
    assert int(summary.get_attribute("data-events") or -1) == seeded.events
    assert summary.get_attribute("data-mismatches") == "0"
    chart = _rendered(browser, "chart-backtest")
    before, after = (sum(d["data"]) for d in chart["datasets"])
    assert before > 0 and after > before  # the draft's factor is higher: 50 against 46.7
    browser.execute_script("document.getElementById('chart-backtest').scrollIntoView()")
    _shot(browser, "backtest")

    browser.find_element(By.ID, "approve").click()
    _wait(browser).until(ec.presence_of_element_located((By.ID, "schedule")))
    assert browser.find_element(By.ID, "draft-status").get_attribute("data-status") == "approved"
    browser.find_element(By.ID, "schedule").click()  # the suggested instant: past the lead
    # The approved page said "Approved." in the same place: wait for the next page's words.
    _wait(browser).until(ec.text_to_be_present_in_element((By.ID, "done"), "Scheduled"))
    assert browser.find_element(By.ID, "draft-status").get_attribute("data-status") == "scheduled"
    _shot(browser, "scheduled")

    async with live.sessionmaker() as session:
        filed = await session.get(MethodologyDraft, draft.id)
        assert filed is not None
        assert filed.approved_by == approver.admin_id
        assert filed.activate_at is not None and filed.activate_at > datetime.now(UTC)
        acts = (
            await session.scalars(
                select(AdminAuditEntry.action).where(AdminAuditEntry.admin_id == approver.admin_id)
            )
        ).all()
    assert {"admin.login", "methodology.approve", "methodology.schedule"} <= set(acts)


async def test_decide_a_flagged_credit(live: Live, server: Server, browser: WebDriver) -> None:
    """A reviewer logs in with TOTP, opens the queue, opens a credit flagged by the velocity
    rule as it was credited, rejects it with a reason and a note; the open queue no longer
    shows it, and the decision is in the audit trail."""
    _, outcome = await _flagged_credit(live, f"6222{uuid.uuid4().int % 10**12:012d}")
    credit_id = int(outcome.credit_id or 0)
    reviewer = await _enrol(live, "reviewer")
    await asyncio.to_thread(_log_in, browser, server, reviewer)
    assert browser.current_url.endswith("/admin/review")  # a reviewer's first page
    row = _wait(browser).until(ec.presence_of_element_located((By.ID, f"flag-{credit_id}")))
    assert row.get_attribute("data-status") == "open" and "velocity" in row.text
    _shot(browser, "review-queue")
    row.find_element(By.LINK_TEXT, str(credit_id)).click()
    _wait(browser).until(ec.presence_of_element_located((By.ID, "flag-details")))
    assert "velocity" in browser.find_element(By.ID, "flag-details").text
    browser.find_element(By.ID, "assign-me").click()
    _wait(browser).until(ec.text_to_be_present_in_element((By.ID, "done"), "Assignment saved"))
    assert browser.find_element(By.ID, "flag-assignee").text == "me"
    _shot(browser, "review-flag")

    Select(browser.find_element(By.ID, "reject-reason")).select_by_value("implausible_trips")
    browser.find_element(By.ID, "reject-note").send_keys("two trips in ten minutes")
    browser.find_element(By.ID, "reject").click()
    _wait(browser).until(ec.text_to_be_present_in_element((By.ID, "done"), "Rejected"))
    status = browser.find_element(By.ID, "flag-status")
    assert status.get_attribute("data-status") == "rejected"
    assert "more than one person can make" in browser.find_element(By.ID, "flag-reason").text
    _shot(browser, "review-rejected")

    browser.get(f"{server.base_url}/admin/review")
    _wait(browser).until(ec.presence_of_element_located((By.ID, "flags")))
    assert not browser.find_elements(By.ID, f"flag-{credit_id}")
    browser.get(f"{server.base_url}/admin/review?status=rejected")
    done = _wait(browser).until(ec.presence_of_element_located((By.ID, f"flag-{credit_id}")))
    assert done.get_attribute("data-status") == "rejected"

    async with live.sessionmaker() as session:
        flag = await session.get(ReviewFlag, credit_id)
        assert flag is not None
        assert (flag.status, flag.reason, flag.decided_by) == (
            "rejected",
            "implausible_trips",
            reviewer.admin_id,
        )
        acts = (
            await session.scalars(
                select(AdminAuditEntry.action)
                .where(AdminAuditEntry.target_id == str(credit_id))
                .order_by(AdminAuditEntry.id)
            )
        ).all()
    assert acts == ["review.assign", "review.reject"]


async def test_download_a_report(
    live: Live, server: Server, browser: WebDriver, tmp_path: Path
) -> None:
    seeded = await _seed(live)
    who = await _enrol(live, "auditor")
    await asyncio.to_thread(_log_in, browser, server, who)
    today = datetime.now(SHANGHAI).date()
    browser.get(
        f"{server.base_url}/admin/reports?kind=reductions"
        f"&from={today.replace(day=1).isoformat()}&to={today.isoformat()}"
    )
    table = _wait(browser).until(ec.presence_of_element_located((By.ID, "report-table")))
    assert seeded.partner_name in table.text
    _shot(browser, "reports")
    browser.find_element(By.ID, "download-csv").click()
    files = await asyncio.to_thread(_downloaded, tmp_path)
    assert len(files) == 1, files
    assert files[0].name == f"reductions-{today.replace(day=1).isoformat()}-{today.isoformat()}.csv"
    content = await asyncio.to_thread(files[0].read_bytes)
    assert content.startswith(b"\xef\xbb\xbf")  # so spreadsheet programs read UTF-8
    assert seeded.partner_name in content.decode("utf-8-sig")


async def test_the_console_speaks_chinese_to_a_chinese_browser(
    live: Live, server: Server, tmp_path: Path
) -> None:
    await _seed(live)
    who = await _enrol(live, "auditor", "program-admin")
    driver = _driver(tmp_path, "zh-CN,zh")
    try:
        await asyncio.to_thread(_log_in, driver, server, who)
        assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
        assert driver.find_element(By.TAG_NAME, "h1").text == "概览"
        _rendered(driver, "chart-hours")
        _shot(driver, "dashboard-zh-CN")
    finally:
        driver.quit()
