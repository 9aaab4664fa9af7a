"""The console over HTTP without a browser (httpx against the app): login with TOTP, the
session cookie's attributes, CSRF refusals, role refusals (the same roles as the API), the
language, and the methodology acts through the same lifecycle as the API."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.accounts.tokens import Keyring
from service.admin import service as admins
from service.console import session as sessions
from service.console.endpoints import router as console_router
from service.methodologies import lifecycle
from service.methodologies.service import sync_library
from service.models import ADMIN_ROLES, AdminAuditEntry, MethodologyDraft
from tests.admin.test_lifecycle import metro_v2
from tests.console.conftest import PASSWORD, Enrolled, csrf_of, enrol, log_in

HTML = "text/html; charset=utf-8"


def _keyring(app: FastAPI) -> Keyring:
    return Keyring.from_secrets(app.state.secrets.jwt_signing_key)


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    return {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}


async def _signed_in(
    app: FastAPI, db: AsyncSession, browser: httpx.AsyncClient, *roles: str
) -> Enrolled:
    who = await enrol(app, db, *roles)
    response = await log_in(browser, who)
    assert response.status_code == 303, response.text
    return who


async def _draft(app: FastAPI, db: AsyncSession) -> tuple[Enrolled, MethodologyDraft]:
    await sync_library(db)
    author = await enrol(app, db, "methodology-author")
    draft = await lifecycle.create_draft(db, author_actor(author), metro_v2())
    return author, draft


def author_actor(who: Enrolled) -> Any:
    from service import audit

    return audit.Actor(who.admin.id, who.admin.login, "methodology-author", "test")


# --- login and the session cookie ---------------------------------------------------------------


async def test_login_with_totp_sets_a_short_lived_strict_http_only_secure_cookie(
    app: FastAPI, db: AsyncSession, browser: httpx.AsyncClient
) -> None:
    who = await enrol(app, db, "auditor")
    response = await log_in(browser, who)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin"
    cookie = _set_cookies(response)[sessions.COOKIE]
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/admin", "max-age=900"} <= attributes
    token = cookie.split(";", 1)[0].split("=", 1)[1]
    found = sessions.read_session(_keyring(app), token)
    assert found is not None and found.admin_id == who.admin.id
    # The console's token is not an API token, and an API token is not a console session.
    api = await browser.get("/v1/admin/me", headers={"authorization": f"Bearer {token}"})
    assert api.status_code == 401
    login_audit = await db.scalar(
        select(AdminAuditEntry).where(
            AdminAuditEntry.admin_id == who.admin.id, AdminAuditEntry.action == "admin.login"
        )
    )
    assert login_audit is not None


async def test_the_cookie_is_not_secure_in_development_only(
    app: FastAPI, db: AsyncSession, browser: httpx.AsyncClient
) -> None:
    settings = app.state.settings
    app.state.settings = settings.model_copy(update={"environment": "development"})
    try:
        who = await enrol(app, db, "auditor")
        response = await log_in(browser, who)
    finally:
        app.state.settings = settings
    cookie = _set_cookies(response)[sessions.COOKIE].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "secure" not in cookie


async def test_a_wrong_or_replayed_code_is_refused_without_a_session(
    app: FastAPI, db: AsyncSession, browser: httpx.AsyncClient
) -> None:
    who = await enrol(app, db, "auditor")
    page = await browser.get("/admin/login")
    wrong = str((int(who.code()) + 1) % 1_000_000).zfill(6)
    refused = await browser.post(
        "/admin/login",
        data={
            "csrf_token": csrf_of(page.text),
            "login": who.admin.login,
            "password": PASSWORD,
            "totp": wrong,
        },
    )
    assert refused.status_code == 401
    assert sessions.COOKIE not in _set_cookies(refused)
    assert "one-time code is wrong" in refused.text
    assert (await log_in(browser, who)).status_code == 303
    browser.cookies.clear()
    replayed = await log_in(browser, who)  # the same step's code, a second time
    assert replayed.status_code == 401
    assert sessions.COOKIE not in _set_cookies(replayed)


async def test_bad_login_input_is_refused_not_a_500(
    app: FastAPI, browser: httpx.AsyncClient
) -> None:
    for login, code in (("nul\x00name", "123456"), ("someone", "12345x"), ("x" * 5000, "123456")):
        page = await browser.get("/admin/login")  # each answer binds a new nonce
        response = await browser.post(
            "/admin/login",
            data={"csrf_token": csrf_of(page.text), "login": login, "password": "p", "totp": code},
        )
        assert response.status_code == 422
    too_big = await browser.post(
        "/admin/login",
        content=b"login=" + b"a" * 300_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert too_big.status_code == 413


async def test_an_expired_session_sends_the_browser_to_log_in_and_a_used_one_is_renewed(
    app: FastAPI, db: AsyncSession, browser: httpx.AsyncClient
) -> None:
    who = await enrol(app, db, "auditor")
    ring = _keyring(app)
    now = datetime.now(UTC)
    old = sessions.mint_session(
        ring, admin_id=who.admin.id, generation=0, now=now - timedelta(minutes=16)
    )
    browser.cookies.set(sessions.COOKIE, old, domain="console.test", path="/admin")
    expired = await browser.get("/admin/audit")
    assert expired.status_code == 303
    assert expired.headers["location"] == "/admin/login?next=/admin/audit"
    htmx = await browser.get("/admin/audit", headers={"hx-request": "true"})
    assert htmx.status_code == 401 and htmx.headers["hx-redirect"].startswith("/admin/login")

    browser.cookies.clear()
    ten_minutes = sessions.mint_session(
        ring, admin_id=who.admin.id, generation=0, now=now - timedelta(minutes=10)
    )
    browser.cookies.set(sessions.COOKIE, ten_minutes, domain="console.test", path="/admin")
    renewed = await browser.get("/admin/audit")
    assert renewed.status_code == 200
    fresh = _set_cookies(renewed)[sessions.COOKIE].split(";", 1)[0].split("=", 1)[1]
    session = sessions.read_session(ring, fresh)
    assert session is not None and session.issued_at > now - timedelta(seconds=5)
    # ...never past eight hours after the login.
    login_long_ago = now - sessions.SESSION_MAX_AGE + timedelta(minutes=5)
    late = sessions.mint_session(
        ring,
        admin_id=who.admin.id,
        generation=0,
        now=now - timedelta(minutes=10),
        logged_in_at=login_long_ago,
    )
    browser.cookies.clear()
    browser.cookies.set(sessions.COOKIE, late, domain="console.test", path="/admin")
    not_renewed = await browser.get("/admin/audit")
    assert not_renewed.status_code == 200
    assert sessions.COOKIE not in _set_cookies(not_renewed)


async def test_a_role_change_ends_the_console_session_at_once(
    app: FastAPI, db: AsyncSession, browser: httpx.AsyncClient
) -> None:
    who = await _signed_in(app, db, browser, "auditor", "program-admin")
    assert (await browser.get("/admin/audit")).status_code == 200
    boss = await enrol(app, db, "program-admin")
    from service import audit

    await admins.update_admin(
        db,
        audit.Actor(boss.admin.id, boss.admin.login, "program-admin", "test"),
        who.admin.id,
        roles=["auditor"],
        status=None,
    )
    ended = await browser.get("/admin/audit")
    assert ended.status_code == 303
    assert ended.headers["location"].startswith("/admin/login")


async def test_logout_needs_the_token_and_ends_the_cookie(
    app: FastAPI, db: AsyncSession, browser: httpx.AsyncClient
) -> None:
    await _signed_in(app, db, browser, "auditor")
    page = await browser.get("/admin/audit")
    forged = await browser.post("/admin/logout", data={"csrf_token": "x"})
    assert forged.status_code == 403
    out = await browser.post("/admin/logout", data={"csrf_token": csrf_of(page.text)})
    assert out.status_code == 303
    assert "max-age=0" in _set_cookies(out)[sessions.COOKIE].lower()


# --- CSRF ---------------------------------------------------------------------------------------


async def test_a_login_form_without_its_nonce_cookie_or_token_is_refused(
    app: FastAPI, db: AsyncSession, browser: httpx.AsyncClient
) -> None:
    who = await enrol(app, db, "auditor")
    page = await browser.get("/admin/login")
    token = csrf_of(page.text)
    fields = {"login": who.admin.login, "password": PASSWORD, "totp": who.code()}
    no_token = await browser.post("/admin/login", data=fields)
    assert no_token.status_code == 403
    assert 'data-problem-type="csrf-refused"' in no_token.text
    browser.cookies.clear()  # the nonce cookie gone: a token copied from another browser
    no_cookie = await browser.post("/admin/login", data={**fields, "csrf_token": token})
    assert no_cookie.status_code == 403
    assert sessions.COOKIE not in _set_cookies(no_cookie)


async def test_every_console_form_refuses_a_missing_forged_or_cross_site_token(
    app: FastAPI, db: AsyncSession, browser: httpx.AsyncClient
) -> None:
    _, draft = await _draft(app, db)
    await _signed_in(
        app,
        db,
        browser,
        "methodology-approver",
        "methodology-author",
        "auditor",
        "program-admin",
        "reviewer",
    )
    page = await browser.get(f"/admin/methodologies/drafts/{draft.id}")
    good = csrf_of(page.text)
    # Another session's token is no good here.
    other = sessions.csrf_token(_keyring(app), "another-session")
    forms = [
        (f"/admin/methodologies/drafts/{draft.id}/approve", {}),
        (f"/admin/methodologies/drafts/{draft.id}/schedule", {"activate_at": "2099-01-01T00:00"}),
        (
            f"/admin/methodologies/drafts/{draft.id}/backtest",
            {"start": "2026-01-01", "end": "2026-01-02"},
        ),
        ("/admin/methodologies/drafts", {"source_yaml": metro_v2()}),
        ("/admin/logout", {}),
        ("/admin/partners/no-such/suspend", {}),
        ("/admin/merchants/no-such/reinstate", {}),
        ("/admin/review/1/assign", {"to": "me"}),
        ("/admin/review/1/approve", {"note": "fine"}),
        ("/admin/review/1/reject", {"reason": "not_eligible"}),
    ]
    posted = {
        route.path
        for route in console_router.routes
        if isinstance(route, APIRoute) and "POST" in route.methods
    }
    templates = {
        re.sub(
            r"/(partners|merchants)/no-such/\w+",
            r"/\1/{code}/{act}",
            re.sub(r"/\d+/", "/{draft_id}/", re.sub(r"/review/\d+/", "/review/{credit_id}/", path)),
        )
        for path, _ in forms
    }
    assert templates | {"/admin/login"} == posted
    for path, fields in forms:
        for token in (None, "", other):
            data = dict(fields) if token is None else {**fields, "csrf_token": token}
            response = await browser.post(path, data=data)
            assert response.status_code == 403, (path, token)
            assert 'data-problem-type="csrf-refused"' in response.text
        cross_site = await browser.post(
            path, data={**fields, "csrf_token": good}, headers={"origin": "https://evil.example"}
        )
        assert cross_site.status_code == 403, path
    await db.refresh(draft)
    assert draft.approved_by is None and draft.activate_at is None
    drafts = (await db.scalars(select(MethodologyDraft))).all()
    assert len(drafts) == 1  # no second draft was uploaded


# --- roles --------------------------------------------------------------------------------------


def _roles_of(route: APIRoute) -> set[str] | None:
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        roles = getattr(dependency.call, "allowed_roles", None)
        if roles is not None:
            return set(roles)
        stack.extend(dependency.dependencies)
    return None


def _api_routes(routes: Any, prefix: str = "") -> list[tuple[str, APIRoute]]:
    """Every APIRoute with its full path, through routers included in routers (FastAPI keeps
    an included router as one entry of `app.routes`)."""
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append((prefix + route.path, route))
        elif hasattr(route, "original_router"):
            found += _api_routes(
                route.original_router.routes, prefix + route.include_context.prefix
            )
    return found


def _route(app: FastAPI, method: str, path: str) -> APIRoute:
    for full, route in _api_routes(app.routes):
        if full == path and method in route.methods:
            return route
    raise AssertionError(f"no route {method} {path}")


# Each console page and the API endpoint whose roles it must have.
SAME_ROLES = [
    ("GET", "/admin/dashboard", "GET", "/v1/admin/reports/points"),
    ("GET", "/admin/reports", "GET", "/v1/admin/reports/reductions"),
    ("GET", "/admin/reports/{kind}.csv", "GET", "/v1/admin/reports/settlement"),
    ("GET", "/admin/methodologies", "GET", "/v1/admin/methodology-drafts"),
    (
        "GET",
        "/admin/methodologies/drafts/{draft_id}",
        "GET",
        "/v1/admin/methodology-drafts/{draft_id}/diff",
    ),
    ("POST", "/admin/methodologies/drafts", "POST", "/v1/admin/methodology-drafts"),
    (
        "POST",
        "/admin/methodologies/drafts/{draft_id}/backtest",
        "POST",
        "/v1/admin/methodology-drafts/{draft_id}/backtest",
    ),
    (
        "POST",
        "/admin/methodologies/drafts/{draft_id}/approve",
        "POST",
        "/v1/admin/methodology-drafts/{draft_id}/approve",
    ),
    (
        "POST",
        "/admin/methodologies/drafts/{draft_id}/schedule",
        "POST",
        "/v1/admin/methodology-drafts/{draft_id}/schedule",
    ),
    ("GET", "/admin/organisations", "GET", "/v1/admin/partners"),
    ("GET", "/admin/organisations", "GET", "/v1/admin/merchants"),
    ("POST", "/admin/partners/{code}/{act}", "POST", "/v1/admin/partners/{code}/suspend"),
    ("POST", "/admin/partners/{code}/{act}", "POST", "/v1/admin/partners/{code}/reinstate"),
    ("POST", "/admin/merchants/{code}/{act}", "POST", "/v1/admin/merchants/{code}/suspend"),
    ("POST", "/admin/merchants/{code}/{act}", "POST", "/v1/admin/merchants/{code}/reinstate"),
    ("GET", "/admin/audit", "GET", "/v1/admin/audit"),
    ("GET", "/admin/review", "GET", "/v1/admin/review/flags"),
    ("GET", "/admin/review/{credit_id}", "GET", "/v1/admin/review/flags/{credit_id}"),
    (
        "POST",
        "/admin/review/{credit_id}/assign",
        "POST",
        "/v1/admin/review/flags/{credit_id}/assign",
    ),
    (
        "POST",
        "/admin/review/{credit_id}/approve",
        "POST",
        "/v1/admin/review/flags/{credit_id}/approve",
    ),
    (
        "POST",
        "/admin/review/{credit_id}/reject",
        "POST",
        "/v1/admin/review/flags/{credit_id}/reject",
    ),
    ("GET", "/admin", "GET", "/v1/admin/me"),
    ("POST", "/admin/logout", "GET", "/v1/admin/me"),
]
PUBLIC = {("GET", "/admin/login"), ("POST", "/admin/login"), ("GET", "/admin/static/{name:path}")}


def test_every_page_admits_exactly_the_roles_of_its_api_endpoint(app: FastAPI) -> None:
    console = {
        (method, path)
        for path, route in _api_routes(app.routes)
        if path.startswith("/admin")
        for method in route.methods
    }
    assert console - PUBLIC == {(m, p) for m, p, *_ in SAME_ROLES}
    for method, page, api_method, api in SAME_ROLES:
        page_roles = _roles_of(_route(app, method, page))
        assert page_roles is not None, page
        assert page_roles == _roles_of(_route(app, api_method, api)), page
    # Nor do the console's pages appear in the API's document.
    assert not [p for p in app.openapi()["paths"] if p.startswith("/admin")]


PAGES = {
    "/admin/dashboard": {"auditor", "program-admin"},
    "/admin/reports": {"auditor", "program-admin"},
    "/admin/reports/points.csv?from=2026-11-01&to=2026-11-30": {"auditor", "program-admin"},
    "/admin/methodologies": {
        "methodology-author",
        "methodology-approver",
        "auditor",
        "program-admin",
    },
    "/admin/organisations": {"program-admin", "auditor"},
    "/admin/audit": {"auditor"},
    "/admin/review": {"reviewer", "program-admin", "auditor"},
}


@pytest.mark.parametrize("role", ADMIN_ROLES)
async def test_each_role_opens_only_its_pages_and_sees_only_them_in_the_menu(
    app: FastAPI, db: AsyncSession, browser: httpx.AsyncClient, role: str
) -> None:
    await _signed_in(app, db, browser, role)
    for path, allowed in PAGES.items():
        response = await browser.get(path)
        if role in allowed:
            assert response.status_code == 200, (path, response.text[:300])
        else:
            assert response.status_code == 403, path
            assert 'data-problem-type="role-required"' in response.text
            assert response.headers["content-type"] == HTML
    home = await browser.get("/admin")
    # Every role now opens a page: home sends each to its first one.
    assert home.status_code == 303
    in_menu = (
        "/admin/dashboard",
        "/admin/methodologies",
        "/admin/review",
        "/admin/organisations",
        "/admin/audit",
    )
    first_page = next(p for p in in_menu if role in PAGES[p])
    assert home.headers["location"] == first_page
    shown = (await browser.get(first_page)).text
    menu = [p for p in in_menu if f'href="{p}"' in shown]
    assert menu == [p for p in in_menu if role in PAGES[p]]


async def test_an_approver_who_wrote_the_draft_is_refused_by_the_four_eyes_rule(
    app: FastAPI, db: AsyncSession, browser: httpx.AsyncClient
) -> None:
    await sync_library(db)
    who = await _signed_in(app, db, browser, "methodology-author", "methodology-approver")
    page = await browser.get("/admin/methodologies")
    created = await browser.post(
        "/admin/methodologies/drafts",
        data={"csrf_token": csrf_of(page.text), "source_yaml": metro_v2()},
    )
    assert created.status_code == 303
    draft_path = created.headers["location"]
    draft_page = await browser.get(draft_path)
    assert draft_page.status_code == 200 and "claim_window_days" in draft_page.text
    refused = await browser.post(
        draft_path + "/approve", data={"csrf_token": csrf_of(draft_page.text)}
    )
    assert refused.status_code == 403
    assert 'data-problem-type="four-eyes"' in refused.text
    draft = await db.scalar(
        select(MethodologyDraft).where(MethodologyDraft.author_id == who.admin.id)
    )
    assert draft is not None and draft.approved_by is None


async def test_a_second_administrator_back_tests_approves_and_schedules(
    app: FastAPI, db: AsyncSession, browser: httpx.AsyncClient
) -> None:
    _, draft = await _draft(app, db)
    approver = await _signed_in(app, db, browser, "methodology-approver")
    page = await browser.get(f"/admin/methodologies/drafts/{draft.id}")
    assert "claim_window_days: 7 -&gt; 10" in page.text  # the diff
    token = csrf_of(page.text)
    result = await browser.post(
        f"/admin/methodologies/drafts/{draft.id}/backtest",
        data={"csrf_token": token, "start": "2026-01-01", "end": "2026-01-31"},
        headers={"hx-request": "true"},
    )
    assert result.status_code == 200
    assert 'id="backtest-summary" data-events="0" data-mismatches="0"' in result.text
    assert 'data-chart="backtest"' in result.text and "<html" not in result.text
    too_long = await browser.post(
        f"/admin/methodologies/drafts/{draft.id}/backtest",
        data={"csrf_token": token, "start": "2025-01-01", "end": "2026-06-30"},
    )
    assert too_long.status_code == 422
    approved = await browser.post(
        f"/admin/methodologies/drafts/{draft.id}/approve", data={"csrf_token": token}
    )
    assert approved.status_code == 303
    too_soon = await browser.post(
        f"/admin/methodologies/drafts/{draft.id}/schedule",
        data={"csrf_token": token, "activate_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")},
    )
    assert too_soon.status_code == 409 or too_soon.status_code == 422
    assert "at least 60 s in the future" in too_soon.text
    shanghai_later = (datetime.now(UTC) + timedelta(hours=8, minutes=10)).strftime("%Y-%m-%dT%H:%M")
    scheduled = await browser.post(
        f"/admin/methodologies/drafts/{draft.id}/schedule",
        data={"csrf_token": token, "activate_at": shanghai_later},
    )
    assert scheduled.status_code == 303
    await db.refresh(draft)
    assert draft.approved_by == approver.admin.id
    assert draft.activate_at is not None
    assert (
        draft.activate_at.astimezone(UTC).strftime("%H:%M")
        == (datetime.now(UTC) + timedelta(minutes=10)).strftime("%H:%M")
        or abs((draft.activate_at - datetime.now(UTC) - timedelta(minutes=10)).total_seconds())
        < 120
    )
    actions = (
        await db.scalars(
            select(AdminAuditEntry.action).where(AdminAuditEntry.admin_id == approver.admin.id)
        )
    ).all()
    assert {"admin.login", "methodology.approve", "methodology.schedule"} <= set(actions)
    shown = await browser.get(scheduled.headers["location"])
    assert 'data-status="scheduled"' in shown.text


async def test_a_malformed_schedule_instant_is_refused_not_a_500(
    app: FastAPI, db: AsyncSession, browser: httpx.AsyncClient
) -> None:
    _, draft = await _draft(app, db)
    await _signed_in(app, db, browser, "methodology-approver")
    page = await browser.get(f"/admin/methodologies/drafts/{draft.id}")
    token = csrf_of(page.text)
    for value in ("", "tomorrow", "2026-13-01T00:00", "99999-01-01T00:00", "2026-01-01T00:00\x00"):
        response = await browser.post(
            f"/admin/methodologies/drafts/{draft.id}/schedule",
            data={"csrf_token": token, "activate_at": value},
        )
        assert response.status_code in (409, 422), value
    for path in (
        "/admin/methodologies/drafts/0",
        "/admin/methodologies/drafts/99999999999999999999",
    ):
        assert (await browser.get(path)).status_code == 422
    for missing in (
        await browser.get("/admin/methodologies/drafts/424242"),
        await browser.post(
            "/admin/methodologies/drafts/424242/approve", data={"csrf_token": token}
        ),
    ):
        assert missing.status_code == 404
        assert missing.headers["content-type"] == HTML  # a page, not problem JSON


async def test_a_programme_administrator_suspends_and_reinstates_a_partner_and_a_merchant(
    app: FastAPI, db: AsyncSession, browser: httpx.AsyncClient
) -> None:
    from service.merchants import service as merchants
    from service.partners import service as partners

    partner = await partners.create_partner(
        db, code="console-metro", name="南昌地铁", kind="transit", action_types=["transit.metro"]
    )
    merchant = await merchants.create_merchant(db, code="console-shop", name="Shop", region=None)
    who = await _signed_in(app, db, browser, "program-admin")
    page = await browser.get("/admin/organisations")
    assert "南昌地铁" in page.text and 'id="partners-console-metro-suspend"' in page.text
    token = csrf_of(page.text)
    for path in ("/admin/partners/console-metro/suspend", "/admin/merchants/console-shop/suspend"):
        assert (await browser.post(path, data={"csrf_token": token})).status_code == 303
    await db.refresh(partner)
    await db.refresh(merchant)
    assert partner.status == "suspended" and merchant.status == "suspended"
    page = await browser.get("/admin/organisations")
    assert 'id="partners-console-metro-reinstate"' in page.text
    assert (
        await browser.post("/admin/partners/console-metro/reinstate", data={"csrf_token": token})
    ).status_code == 303
    await db.refresh(partner)
    assert partner.status == "active"
    acts = (
        await db.scalars(
            select(AdminAuditEntry.action).where(AdminAuditEntry.admin_id == who.admin.id)
        )
    ).all()
    assert {"partner.suspend", "merchant.suspend", "partner.reinstate"} <= set(acts)
    missing = await browser.post("/admin/partners/no-such/suspend", data={"csrf_token": token})
    assert missing.status_code == 404 and missing.headers["content-type"] == HTML
    bad = await browser.post("/admin/partners/console-metro/delete", data={"csrf_token": token})
    assert bad.status_code == 422
    # An auditor reads the list, without the buttons, and may not act.
    browser.cookies.clear()
    await _signed_in(app, db, browser, "auditor")
    page = await browser.get("/admin/organisations")
    assert page.status_code == 200 and "partners-console-metro-suspend" not in page.text
    refused = await browser.post(
        "/admin/partners/console-metro/suspend", data={"csrf_token": csrf_of(page.text)}
    )
    assert refused.status_code == 403 and 'data-problem-type="role-required"' in refused.text


# --- reports and the language -------------------------------------------------------------------


async def test_a_report_downloads_as_csv_with_a_byte_order_mark(
    app: FastAPI, db: AsyncSession, browser: httpx.AsyncClient
) -> None:
    await _signed_in(app, db, browser, "auditor")
    page = await browser.get("/admin/reports?kind=points&from=2026-11-01&to=2026-11-30")
    assert page.status_code == 200
    assert 'href="/admin/reports/points.csv?from=2026-11-01&amp;to=2026-11-30"' in page.text
    response = await browser.get("/admin/reports/points.csv?from=2026-11-01&to=2026-11-30")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert (
        response.headers["content-disposition"]
        == 'attachment; filename="points-2026-11-01-2026-11-30.csv"'
    )
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows and rows[0]
    backwards = await browser.get("/admin/reports/points.csv?from=2026-11-30&to=2026-11-01")
    assert backwards.status_code == 422
    no_such_day = await browser.get("/admin/reports?kind=points&from=2026-02-31&to=2026-03-01")
    assert no_such_day.status_code == 422


@pytest.mark.parametrize(
    ("accept", "language", "title"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.5", "zh-CN", "审计日志"),
        ("en-GB,en;q=0.9", "en", "Audit log"),
        ("fr-FR", "en", "Audit log"),
        ("en;q=0.4, zh-Hans;q=0.8", "zh-CN", "审计日志"),
    ],
)
async def test_the_language_follows_accept_language(
    app: FastAPI,
    db: AsyncSession,
    browser: httpx.AsyncClient,
    accept: str,
    language: str,
    title: str,
) -> None:
    await _signed_in(app, db, browser, "auditor")
    page = await browser.get("/admin/audit", headers={"accept-language": accept})
    assert page.status_code == 200
    assert page.headers["content-language"] == language
    assert f'<html lang="{language}">' in page.text
    assert f"<h1>{title}</h1>" in page.text
    login = await browser.get("/admin/login", headers={"accept-language": accept})
    assert (language == "zh-CN") == ("登录" in login.text)


async def test_pages_carry_a_strict_content_security_policy(
    app: FastAPI, db: AsyncSession, browser: httpx.AsyncClient
) -> None:
    await _signed_in(app, db, browser, "auditor", "program-admin")
    page = await browser.get("/admin/dashboard")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text  # no inline script: only JSON data and our own files
