"""The console's pages under `/admin` (not in the OpenAPI document: they answer HTML).

Reads call the owning domains' services; acts (approve, schedule, a new draft) call the same
lifecycle functions as the API, which enforce its rules (four eyes, the activation lead) and
write the audit trail. Every POST checks the form's CSRF token and the browser's Origin.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, get_args
from urllib.parse import parse_qsl, quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import ValidationError

from service import audit
from service.accounts.dependencies import keyring
from service.admin import merchants as merchant_admin
from service.admin import partners as partner_admin
from service.admin import service as admins
from service.admin.errors import AdminLoginFailedError
from service.admin.schemas import AdminLoginIn, BacktestIn, BacktestOut, DraftIn
from service.console import charts
from service.console import session as sessions
from service.console.dependencies import (
    STATIC,
    ConsoleAdmin,
    chart_json,
    check_csrf,
    check_origin,
    console_language,
    render,
    require_page,
    set_session_cookie,
)
from service.console.errors import ConsoleError, ConsoleLoginRequiredError, CsrfRefusedError
from service.console.navigation import (
    AUDITORS,
    METHODOLOGY_APPROVERS,
    METHODOLOGY_AUTHORS,
    METHODOLOGY_READERS,
    ORGANISATION_ADMINS,
    ORGANISATION_READERS,
    REPORT_READERS,
    REVIEW_READERS,
    REVIEWERS,
    landing,
)
from service.db import DbSession, ReadSession
from service.dependencies import AppSecrets, AppSettings, MethodologyRegistry, RedisClient
from service.errors import (
    BadRequestError,
    PayloadTooLargeError,
    ProblemError,
    ValidationProblem,
)
from service.fields import AUDIT_ACTION_MAX_LENGTH, CODE_PATTERN, CURSOR_PATTERN, INT64_MAX
from service.i18n import translate
from service.ledger import service as ledger
from service.merchants.auth import MerchantKeys
from service.methodologies import lifecycle
from service.methodologies.backtest import backtest as run_backtest
from service.partners.auth import PartnerCredentials
from service.reports import service as reports
from service.reports import spreadsheets
from service.review import service as review
from service.review.schemas import NOTE_MAX_LENGTH, ApproveIn, RejectIn, RuleName

router = APIRouter(prefix="/admin", include_in_schema=False)

AnyAdmin = Annotated[ConsoleAdmin, Depends(require_page())]
ReportReader = Annotated[ConsoleAdmin, Depends(require_page(*REPORT_READERS))]
MethodologyReader = Annotated[ConsoleAdmin, Depends(require_page(*METHODOLOGY_READERS))]
Author = Annotated[ConsoleAdmin, Depends(require_page(*METHODOLOGY_AUTHORS))]
Approver = Annotated[ConsoleAdmin, Depends(require_page(*METHODOLOGY_APPROVERS))]
OrganisationReader = Annotated[ConsoleAdmin, Depends(require_page(*ORGANISATION_READERS))]
Auditor = Annotated[ConsoleAdmin, Depends(require_page(*AUDITORS))]
ReviewReader = Annotated[ConsoleAdmin, Depends(require_page(*REVIEW_READERS))]
Reviewer = Annotated[ConsoleAdmin, Depends(require_page(*REVIEWERS))]
DraftId = Annotated[int, Path(ge=1, le=INT64_MAX)]
CreditId = Annotated[int, Path(ge=1, le=INT64_MAX)]
PageCursor = Annotated[str | None, Query(pattern=CURSOR_PATTERN)]
DayQuery = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")]
ReportKind = Literal["reductions", "points", "settlement", "partner-health"]

MAX_FORM_BYTES = 256 * 1024  # a draft's YAML (64 KiB of characters, up to 4 bytes each)
MAX_FORM_FIELDS = 16
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LOCAL_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")
_NEXT = re.compile(r"^/admin/[A-Za-z0-9/_\-]*$")
PAGE_SIZE = 50


# --- helpers ----------------------------------------------------------------------------------


async def read_form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body, bounded; the first value of each name."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise ConsoleError(PayloadTooLargeError(f"a form is at most {MAX_FORM_BYTES} bytes"))
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ConsoleError(PayloadTooLargeError(f"a form is at most {MAX_FORM_BYTES} bytes"))
    if not body:
        return {}  # a button alone (approve, log out): only the CSRF header can vouch for it
    if kind != "application/x-www-form-urlencoded":
        raise ConsoleError(BadRequestError("send the console's form"))
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise ConsoleError(BadRequestError("the form is not UTF-8 text")) from None
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form


def _zone(request: Request) -> ZoneInfo:
    return ZoneInfo(request.app.state.settings.program_timezone)


def _today(zone: ZoneInfo) -> date:
    return datetime.now(zone).date()


def _parse_day(value: str | None, fallback: date) -> date:
    if not value:
        return fallback
    if not _DAY.match(value):
        raise ValidationProblem("give a day as YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationProblem(f"{value} is not a day") from None


def _local_instant(value: str, zone: ZoneInfo) -> datetime:
    if not _LOCAL_INSTANT.match(value):
        raise ValidationProblem("give the instant as YYYY-MM-DDTHH:MM")
    try:
        naive = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationProblem(f"{value} is not an instant") from None
    return naive.replace(tzinfo=zone)


def _validation_message(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5]
    )


def _problem_message(request: Request, problem: ProblemError) -> dict[str, Any]:
    """A refusal for the page: its status, its problem type and its detail in the reader's
    language."""
    detail = translate(problem.detail, console_language(request))
    return {"status": problem.status, "type": problem.slug, "detail": detail}


def _safe_next(value: str | None) -> str:
    return value if value and _NEXT.match(value) else "/admin"


# --- login and logout ---------------------------------------------------------------------------


def _login_page(
    request: Request, *, error: str | None = None, status_code: int = 200, next_path: str = ""
) -> Response:
    nonce = sessions.new_nonce()
    response = render(
        request,
        "login.html",
        {
            "csrf": sessions.login_csrf_token(keyring(request), nonce),
            "error": error,
            "next": _safe_next(next_path),
        },
        status_code=status_code,
    )
    response.set_cookie(
        sessions.LOGIN_COOKIE,
        nonce,
        max_age=int(sessions.LOGIN_NONCE_TTL.total_seconds()),
        path=sessions.COOKIE_PATH,
        secure=request.app.state.settings.environment != "development",
        httponly=True,
        samesite="strict",
    )
    return response


@router.get("/login")
async def login_page(
    request: Request, next: Annotated[str | None, Query(max_length=200)] = None
) -> Response:
    return _login_page(request, next_path=next or "")


@router.post("/login")
async def login(
    request: Request, session: DbSession, redis: RedisClient, secrets: AppSecrets
) -> Response:
    form = await read_form(request)
    check_origin(request)
    nonce = request.cookies.get(sessions.LOGIN_COOKIE)
    expected = sessions.login_csrf_token(keyring(request), nonce) if nonce else None
    if expected is None or not sessions.tokens_match(expected, form.get(sessions.CSRF_FIELD)):
        raise ConsoleError(CsrfRefusedError("reload the login page and try again"))
    next_path = _safe_next(form.get("next"))
    try:
        fields = AdminLoginIn(
            login=form.get("login", ""),
            password=form.get("password", ""),
            totp=form.get("totp", ""),
        )
        done = await admins.login(
            session,
            redis,
            keyring(request),
            secrets.partner_secret_key,
            login=fields.login,
            password=fields.password,
            code=fields.totp,
            address=request.client.host if request.client else "unknown",
            request_id=getattr(request.state, "request_id", None),
        )
    except ValidationError:
        return _login_page(request, error="invalid", status_code=422, next_path=next_path)
    except AdminLoginFailedError:
        return _login_page(request, error="failed", status_code=401, next_path=next_path)
    except ProblemError as problem:  # throttled
        return _login_page(
            request, error="throttled", status_code=problem.status, next_path=next_path
        )
    token = sessions.mint_session(
        keyring(request),
        admin_id=done.admin.id,
        generation=done.admin.token_generation,
        now=datetime.now(UTC),
    )
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(response, request, token)
    response.delete_cookie(
        sessions.LOGIN_COOKIE, path=sessions.COOKIE_PATH, httponly=True, samesite="strict"
    )
    return response


@router.post("/logout")
async def logout(request: Request, admin: AnyAdmin) -> Response:
    check_csrf(request, admin, await read_form(request))
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(
        sessions.COOKIE, path=sessions.COOKIE_PATH, httponly=True, samesite="strict"
    )
    return response


@router.get("")
async def home(request: Request, admin: AnyAdmin) -> Response:
    first = landing(admin.roles)
    if first is not None:
        return RedirectResponse(first, status_code=303)
    return render(request, "home.html", {}, admin=admin)


# --- the dashboard ------------------------------------------------------------------------------

DASHBOARD_MONTHS = 12


@router.get("/dashboard")
async def dashboard(request: Request, admin: ReportReader, session: ReadSession) -> Response:
    zone = _zone(request)
    now = datetime.now(UTC)
    today = now.astimezone(zone).date()
    months = charts.month_starts(today, DASHBOARD_MONTHS)
    window_start = charts.local_midnight(months[0], zone)
    window_end = charts.local_midnight(charts.next_month(months[-1]), zone)
    reductions = await reports.reductions(session, start=window_start, end=window_end, zone=zone)
    flows = []
    for first in months:
        month_flows = await ledger.points_flows(
            session,
            start=charts.local_midnight(first, zone),
            end=min(charts.local_midnight(charts.next_month(first), zone), now),
        )
        flows.append(
            charts.MonthFlow(
                first.strftime("%Y-%m"),
                month_flows.issued,
                month_flows.redeemed,
                month_flows.expired,
                month_flows.participants_net,
            )
        )
    points = await reports.points(session, start=window_start, end=now, now=now, zone=zone)
    today_start = charts.local_midnight(today, zone)
    health = await reports.partner_health(
        session, start=today_start, end=today_start + timedelta(days=1), zone=zone
    )
    hourly = charts.events_by_hour(health)
    data = {
        "reductions": charts.reductions_by_month(reductions, months),
        "points": charts.outstanding_by_month(points.liability.outstanding, flows),
        "hours": hourly,
    }
    return render(
        request,
        "dashboard.html",
        {
            "charts": {name: chart_json(values) for name, values in data.items()},
            "reductions": reductions,
            "liability": points.liability,
            "events_today": sum(hourly["events"]),
            "rejected_today": sum(hourly["rejected"]),
            "today": today.isoformat(),
            "timezone": zone.key,
        },
        admin=admin,
    )


# --- methodologies ------------------------------------------------------------------------------


@router.get("/methodologies")
async def methodologies(
    request: Request,
    admin: MethodologyReader,
    session: DbSession,
    drafts_before: PageCursor = None,
) -> Response:
    drafts = await lifecycle.list_drafts(session, cursor=drafts_before, limit=PAGE_SIZE)
    versions = await lifecycle.all_filed_versions(session)
    return render(
        request,
        "methodologies.html",
        {
            "drafts": drafts.items,
            "next_drafts": drafts.next_cursor,
            "versions": versions,
            "may_author": admin.may(METHODOLOGY_AUTHORS),
            "timezone": _zone(request),
        },
        admin=admin,
    )


@router.post("/methodologies/drafts")
async def create_draft(request: Request, admin: Author, session: DbSession) -> Response:
    form = await read_form(request)
    check_csrf(request, admin, form)
    try:
        body = DraftIn(source_yaml=form.get("source_yaml", "").replace("\r\n", "\n"))
        async with session.begin_nested():  # a refusal undoes the act, and only the act
            draft = await lifecycle.create_draft(session, admin.actor, body.source_yaml)
    except ValidationError as invalid:
        message = {
            "status": 422,
            "type": "validation-error",
            "detail": _validation_message(invalid),
        }
        return await _methodologies_with_error(request, admin, session, message, form)
    except ProblemError as problem:
        message = _problem_message(request, problem)
        return await _methodologies_with_error(request, admin, session, message, form)
    return RedirectResponse(f"/admin/methodologies/drafts/{draft.id}", status_code=303)


async def _methodologies_with_error(
    request: Request,
    admin: ConsoleAdmin,
    session: DbSession,
    message: dict[str, Any],
    form: dict[str, str],
) -> Response:
    drafts = await lifecycle.list_drafts(session, limit=PAGE_SIZE)
    return render(
        request,
        "methodologies.html",
        {
            "drafts": drafts.items,
            "next_drafts": drafts.next_cursor,
            "versions": await lifecycle.all_filed_versions(session),
            "may_author": True,
            "error": message,
            "source_yaml": form.get("source_yaml", ""),
            "timezone": _zone(request),
        },
        admin=admin,
        status_code=int(message["status"]),
    )


async def _draft_page(
    request: Request,
    admin: ConsoleAdmin,
    session: DbSession,
    draft_id: int,
    *,
    error: dict[str, Any] | None = None,
    done: str | None = None,
    status_code: int = 200,
) -> Response:
    try:
        draft = await lifecycle.get_draft(session, draft_id)
        difference = await lifecycle.diff_draft(session, draft_id)
    except ProblemError as problem:  # no such draft: a page saying so
        raise ConsoleError(problem) from None
    zone = _zone(request)
    today = _today(zone)
    settings = request.app.state.settings
    earliest = datetime.now(zone) + timedelta(seconds=settings.methodology_min_lead_seconds + 60)
    return render(
        request,
        "draft.html",
        {
            "draft": draft,
            "status": _draft_status(draft),
            "diff": difference,
            "changes": [str(c) for c in difference.changes],
            "backtest_start": (today - timedelta(days=30)).isoformat(),
            "backtest_end": today.isoformat(),
            "schedule_default": earliest.strftime("%Y-%m-%dT%H:%M"),
            "may_approve": admin.may(METHODOLOGY_APPROVERS),
            "is_author": draft.author_id == admin.admin_id,
            "timezone": zone,
            "error": error,
            "done": done,
        },
        admin=admin,
        status_code=status_code,
    )


def _draft_status(draft: Any) -> str:
    if draft.activate_at is not None:
        return "scheduled"
    return "approved" if draft.approved_by is not None else "draft"


@router.get("/methodologies/drafts/{draft_id}")
async def draft_page(
    request: Request,
    draft_id: DraftId,
    admin: MethodologyReader,
    session: DbSession,
    done: Annotated[Literal["approved", "scheduled"] | None, Query()] = None,
) -> Response:
    return await _draft_page(request, admin, session, draft_id, done=done)


@router.post("/methodologies/drafts/{draft_id}/backtest")
async def backtest(
    request: Request, draft_id: DraftId, admin: MethodologyReader, session: DbSession
) -> Response:
    form = await read_form(request)
    check_csrf(request, admin, form)
    zone = _zone(request)
    try:
        first = _parse_day(form.get("start"), _today(zone) - timedelta(days=30))
        last = _parse_day(form.get("end"), _today(zone))
        window = BacktestIn(
            start=charts.local_midnight(first, zone),
            end=charts.local_midnight(last + timedelta(days=1), zone),
            top=10,
        )
        draft = await lifecycle.get_draft(session, draft_id)
        report = await run_backtest(
            session, lifecycle.compile_version(draft), window.start, window.end
        )
    except ValidationError as error:
        return render(
            request,
            "_backtest.html",
            {"error": {"status": 422, "detail": _validation_message(error)}},
            admin=admin,
            status_code=422,
        )
    except ProblemError as problem:
        return render(
            request,
            "_backtest.html",
            {"error": _problem_message(request, problem)},
            admin=admin,
            status_code=problem.status,
        )
    result = BacktestOut(draft_id=draft_id, **report.as_json(window.top))
    return render(
        request,
        "_backtest.html",
        {
            "result": result,
            "first": first.isoformat(),
            "last": last.isoformat(),
            "chart_data": chart_json(charts.backtest_distribution(result)),
            "points_in_force": sum(g.points_in_force for g in result.groups),
            "points_draft": sum(g.points_draft for g in result.groups),
        },
        admin=admin,
    )


@router.post("/methodologies/drafts/{draft_id}/approve")
async def approve(
    request: Request, draft_id: DraftId, admin: Approver, session: DbSession
) -> Response:
    check_csrf(request, admin, await read_form(request))
    try:
        async with session.begin_nested():  # a refusal undoes the act, and only the act
            await lifecycle.approve(session, admin.actor, draft_id)
    except ProblemError as problem:
        return await _draft_page(
            request,
            admin,
            session,
            draft_id,
            error=_problem_message(request, problem),
            status_code=problem.status,
        )
    return RedirectResponse(
        f"/admin/methodologies/drafts/{draft_id}?done=approved", status_code=303
    )


@router.post("/methodologies/drafts/{draft_id}/schedule")
async def schedule(
    request: Request,
    draft_id: DraftId,
    admin: Approver,
    settings: AppSettings,
    registry: MethodologyRegistry,
    session: DbSession,
) -> Response:
    form = await read_form(request)
    check_csrf(request, admin, form)
    try:
        at = _local_instant(form.get("activate_at", ""), _zone(request))
        async with session.begin_nested():  # a refusal undoes the act, and only the act
            await lifecycle.schedule(
                session,
                admin.actor,
                draft_id,
                at,
                min_lead=timedelta(seconds=settings.methodology_min_lead_seconds),
            )
    except ProblemError as problem:
        return await _draft_page(
            request,
            admin,
            session,
            draft_id,
            error=_problem_message(request, problem),
            status_code=problem.status,
        )
    registry.invalidate()
    return RedirectResponse(
        f"/admin/methodologies/drafts/{draft_id}?done=scheduled", status_code=303
    )


# --- partners and merchants ---------------------------------------------------------------------


@router.get("/organisations")
async def organisations(
    request: Request,
    admin: OrganisationReader,
    session: DbSession,
    partners_after: Annotated[str | None, Query(pattern=CODE_PATTERN)] = None,
    merchants_after: Annotated[str | None, Query(pattern=CODE_PATTERN)] = None,
) -> Response:
    partners, next_partners = await partner_admin.list_partners(
        session, cursor=partners_after, limit=PAGE_SIZE
    )
    merchants, next_merchants = await merchant_admin.list_merchants(
        session, cursor=merchants_after, limit=PAGE_SIZE
    )
    return render(
        request,
        "organisations.html",
        {
            "partners": partners,
            "next_partners": next_partners,
            "merchants": merchants,
            "next_merchants": next_merchants,
            "may_suspend": admin.may(ORGANISATION_ADMINS),
            "timezone": _zone(request),
        },
        admin=admin,
    )


OrganisationAdmin = Annotated[ConsoleAdmin, Depends(require_page(*ORGANISATION_ADMINS))]
OrganisationCode = Annotated[str, Path(pattern=CODE_PATTERN)]
StatusAct = Literal["suspend", "reinstate"]
_NEW_STATUS = {"suspend": "suspended", "reinstate": "active"}


@router.post("/partners/{code}/{act}")
async def partner_status(
    request: Request,
    code: OrganisationCode,
    act: StatusAct,
    admin: OrganisationAdmin,
    session: DbSession,
    partner_keys: PartnerCredentials,
) -> Response:
    """Suspend (every request the partner signs is refused) or reinstate a partner, as the
    API does: audited, and this process's key cache cleared at once."""
    check_csrf(request, admin, await read_form(request))
    try:
        async with session.begin_nested():
            await partner_admin.set_status(session, admin.actor, code, _NEW_STATUS[act])
    except ProblemError as problem:
        raise ConsoleError(problem) from None
    partner_keys.clear()
    return RedirectResponse("/admin/organisations", status_code=303)


@router.post("/merchants/{code}/{act}")
async def merchant_status(
    request: Request,
    code: OrganisationCode,
    act: StatusAct,
    admin: OrganisationAdmin,
    session: DbSession,
    merchant_keys: MerchantKeys,
) -> Response:
    """Suspend (its keys are refused) or reinstate a merchant, as the API does."""
    check_csrf(request, admin, await read_form(request))
    try:
        async with session.begin_nested():
            await merchant_admin.set_status(session, admin.actor, code, _NEW_STATUS[act])
    except ProblemError as problem:
        raise ConsoleError(problem) from None
    merchant_keys.clear()
    return RedirectResponse("/admin/organisations", status_code=303)


# --- reports ------------------------------------------------------------------------------------

REPORT_KINDS: tuple[ReportKind, ...] = ("reductions", "points", "settlement", "partner-health")


async def _report(
    request: Request, session: ReadSession, kind: ReportKind, first: date, last: date
) -> Any:
    zone = _zone(request)
    start = charts.local_midnight(first, zone)
    end = charts.local_midnight(last + timedelta(days=1), zone)
    if kind == "reductions":
        return await reports.reductions(session, start=start, end=end, zone=zone)
    if kind == "points":
        return await reports.points(session, start=start, end=end, now=datetime.now(UTC), zone=zone)
    if kind == "settlement":
        fen = request.app.state.settings.fen_per_point
        return await reports.settlement(session, start=start, end=end, zone=zone, fen_per_point=fen)
    return await reports.partner_health(session, start=start, end=end, zone=zone)


def _report_days(request: Request, start: str | None, end: str | None) -> tuple[date, date]:
    today = _today(_zone(request))
    first = _parse_day(start, today.replace(day=1))
    last = _parse_day(end, today)
    return first, last


@router.get("/reports")
async def reports_page(
    request: Request,
    admin: ReportReader,
    session: ReadSession,
    kind: ReportKind = "reductions",
    start: Annotated[str | None, Query(alias="from", pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
    end: Annotated[str | None, Query(alias="to", pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
) -> Response:
    error = None
    report = None
    today = _today(_zone(request))
    first, last = today.replace(day=1), today
    try:
        first, last = _report_days(request, start, end)
        report = await _report(request, session, kind, first, last)
    except ProblemError as problem:
        error = _problem_message(request, problem)
    query = f"from={first.isoformat()}&to={last.isoformat()}"
    return render(
        request,
        "reports.html",
        {
            "kinds": REPORT_KINDS,
            "kind": kind,
            "first": first.isoformat(),
            "last": last.isoformat(),
            "report": report,
            "error": error,
            "csv_url": f"/admin/reports/{kind}.csv?{query}",
            "timezone": _zone(request).key,
        },
        admin=admin,
        status_code=error["status"] if error else 200,
    )


_RENDER_CSV: dict[str, Callable[[Any], bytes]] = {
    "reductions": spreadsheets.reductions,
    "points": spreadsheets.points,
    "settlement": spreadsheets.settlement,
    "partner-health": spreadsheets.partner_health,
}


@router.get("/reports/{kind}.csv")
async def report_csv(
    request: Request,
    kind: ReportKind,
    admin: ReportReader,
    session: ReadSession,
    start: Annotated[str, Query(alias="from", pattern=r"^\d{4}-\d{2}-\d{2}$")],
    end: Annotated[str, Query(alias="to", pattern=r"^\d{4}-\d{2}-\d{2}$")],
) -> Response:
    try:
        first, last = _report_days(request, start, end)
        report = await _report(request, session, kind, first, last)
    except ProblemError as problem:
        raise ConsoleError(problem) from None
    name = f"{kind}-{first.isoformat()}-{last.isoformat()}.csv"
    return Response(
        _RENDER_CSV[kind](report),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="{name}"',
            "cache-control": "no-store",
            "x-content-type-options": "nosniff",
        },
    )


# --- the audit log ------------------------------------------------------------------------------


@router.get("/audit")
async def audit_log(
    request: Request,
    admin: Auditor,
    session: DbSession,
    cursor: PageCursor = None,
    action: Annotated[
        str | None, Query(max_length=AUDIT_ACTION_MAX_LENGTH, pattern=r"^[a-z.\-]*$")
    ] = None,
) -> Response:
    page = await audit.list_entries(session, cursor=cursor, limit=PAGE_SIZE, action=action or None)
    next_url = None
    if page.next_cursor is not None:
        next_url = f"/admin/audit?cursor={page.next_cursor}"
        if action:
            next_url += f"&action={quote(action)}"
    return render(
        request,
        "audit.html",
        {
            "entries": page.entries,
            "action": action or "",
            "next_url": next_url,
            "timezone": _zone(request),
        },
        admin=admin,
    )


# --- the review queue ----------------------------------------------------------------------------

RULE_NAMES: tuple[str, ...] = get_args(RuleName)
FLAG_STATUSES = ("open", "approved", "rejected")
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_OPTIONAL_DAY = r"^(\d{4}-\d{2}-\d{2})?$"


def _queue_day(value: str | None, zone: ZoneInfo, *, next_day: bool = False) -> datetime | None:
    """The local midnight starting (or, `next_day`, ending) a day of the queue's range."""
    if not value:
        return None
    day = _parse_day(value, date.min)
    if not 2000 <= day.year <= 2999:
        raise ValidationProblem("give a day between the years 2000 and 2999")
    return charts.local_midnight(day + timedelta(days=1) if next_day else day, zone)


@router.get("/review")
async def review_queue(
    request: Request,
    admin: ReviewReader,
    session: DbSession,
    status: Annotated[str, Query(pattern=r"^(open|approved|rejected|any)$")] = "open",
    rule: Annotated[str | None, Query(pattern="^(" + "|".join(RULE_NAMES) + ")?$")] = None,
    partner: Annotated[str | None, Query(max_length=36, pattern=f"^({_UUID})?$")] = None,
    assignee: Annotated[str | None, Query(max_length=36, pattern=f"^(me|none|{_UUID})?$")] = None,
    start: Annotated[str | None, Query(alias="from", pattern=_OPTIONAL_DAY)] = None,
    end: Annotated[str | None, Query(alias="to", pattern=_OPTIONAL_DAY)] = None,
    cursor: PageCursor = None,
) -> Response:
    """Flagged credits, newest first, a keyset page at a time, filtered as the API's
    `GET /v1/admin/review/flags` is (the time range in local days of the programme)."""
    zone = _zone(request)
    error = None
    rows: list[Any] = []
    next_cursor = None
    filters = {
        "status": status,
        "rule": rule or "",
        "partner": partner or "",
        "assignee": assignee or "",
        "from": start or "",
        "to": end or "",
    }
    try:
        since = _queue_day(start, zone)
        until = _queue_day(end, zone, next_day=True)
        who: uuid.UUID | None = None
        if assignee == "me":
            who = admin.admin_id
        elif assignee and assignee != "none":
            who = uuid.UUID(assignee)
        where = review.QueueFilter(
            status=None if status == "any" else status,
            rule=rule or None,
            partner_id=uuid.UUID(partner) if partner else None,
            assignee=who,
            unassigned=assignee == "none",
            since=since,
            until=until,
        )
        rows, next_cursor = await review.queue(
            session, where, cursor=int(cursor) if cursor else None, limit=PAGE_SIZE
        )
    except ProblemError as problem:
        error = _problem_message(request, problem)
    next_url = None
    if next_cursor is not None:
        kept = "&".join(f"{quote(k)}={quote(v)}" for k, v in filters.items() if v)
        next_url = f"/admin/review?{kept}&cursor={next_cursor}"
    return render(
        request,
        "review.html",
        {
            "flags": rows,
            "filters": filters,
            "statuses": FLAG_STATUSES,
            "rules": RULE_NAMES,
            "next_url": next_url,
            "error": error,
            "timezone": zone,
        },
        admin=admin,
        status_code=error["status"] if error else 200,
    )


async def _flag_page(
    request: Request,
    admin: ConsoleAdmin,
    session: DbSession,
    credit_id: int,
    *,
    error: dict[str, Any] | None = None,
    done: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    try:
        flag = await review.explain(session, credit_id)
    except ProblemError as problem:  # no such flagged credit: a page saying so
        raise ConsoleError(problem) from None
    language = console_language(request)
    return render(
        request,
        "review_flag.html",
        {
            "flag": flag,
            "reason_text": review.rejection_text(flag.reason, language) if flag.reason else None,
            "reasons": list(review.REJECTION_REASONS.items()),
            "may_decide": admin.may(REVIEWERS),
            "note_max": NOTE_MAX_LENGTH,
            "error": error,
            "done": done,
            "form": form or {},
            "timezone": _zone(request),
        },
        admin=admin,
        status_code=status_code,
    )


@router.get("/review/{credit_id}")
async def review_flag(
    request: Request,
    credit_id: CreditId,
    admin: ReviewReader,
    session: DbSession,
    done: Annotated[Literal["assigned", "approved", "rejected"] | None, Query()] = None,
) -> Response:
    """A flagged credit: the rules it broke with the figures that broke them, and (for
    reviewers) assignment and the decision."""
    return await _flag_page(request, admin, session, credit_id, done=done)


@router.post("/review/{credit_id}/assign")
async def review_assign(
    request: Request, credit_id: CreditId, admin: Reviewer, session: DbSession
) -> Response:
    """Assign the credit to oneself (`to=me`) or return it to the pool (`to=none`): a page's
    reviewer is an active reviewer, so no other check is needed. Audited."""
    form = await read_form(request)
    check_csrf(request, admin, form)
    target = form.get("to", "me")
    try:
        if target not in ("me", "none"):
            raise ValidationProblem("assign to me or to nobody", field="to")
        async with session.begin_nested():  # a refusal undoes the act, and only the act
            await review.assign(
                session, admin.actor, credit_id, admin.admin_id if target == "me" else None
            )
    except ProblemError as problem:
        return await _flag_refused(request, admin, session, credit_id, problem, form)
    return RedirectResponse(f"/admin/review/{credit_id}?done=assigned", status_code=303)


async def _flag_refused(
    request: Request,
    admin: ConsoleAdmin,
    session: DbSession,
    credit_id: int,
    problem: ProblemError,
    form: dict[str, str],
) -> Response:
    if problem.status == 404:
        raise ConsoleError(problem)
    return await _flag_page(
        request,
        admin,
        session,
        credit_id,
        error=_problem_message(request, problem),
        form=form,
        status_code=problem.status,
    )


def _note(form: dict[str, str]) -> str | None:
    note = form.get("note", "").replace("\r\n", "\n").strip()
    return note or None


@router.post("/review/{credit_id}/approve")
async def review_approve(
    request: Request, credit_id: CreditId, admin: Reviewer, session: DbSession
) -> Response:
    """Approve: the credit's points are released. One decision per flag; audited."""
    form = await read_form(request)
    check_csrf(request, admin, form)
    try:
        body = ApproveIn(note=_note(form))
        async with session.begin_nested():
            await review.approve(session, admin.actor, credit_id, note=body.note)
    except ValidationError as invalid:
        problem = ValidationProblem(_validation_message(invalid))
        return await _flag_refused(request, admin, session, credit_id, problem, form)
    except ProblemError as problem:
        return await _flag_refused(request, admin, session, credit_id, problem, form)
    return RedirectResponse(f"/admin/review/{credit_id}?done=approved", status_code=303)


@router.post("/review/{credit_id}/reject")
async def review_reject(
    request: Request, credit_id: CreditId, admin: Reviewer, session: DbSession
) -> Response:
    """Reject with one of the fixed reasons (what the participant reads) and a note for
    reviewers and auditors: the credit is reversed through the ledger. One decision per
    flag; audited."""
    form = await read_form(request)
    check_csrf(request, admin, form)
    try:
        body = RejectIn.model_validate({"reason": form.get("reason", ""), "note": _note(form)})
        async with session.begin_nested():
            await review.reject(session, admin.actor, credit_id, reason=body.reason, note=body.note)
    except ValidationError as invalid:
        problem = ValidationProblem(_validation_message(invalid))
        return await _flag_refused(request, admin, session, credit_id, problem, form)
    except ProblemError as problem:
        return await _flag_refused(request, admin, session, credit_id, problem, form)
    return RedirectResponse(f"/admin/review/{credit_id}?done=rejected", status_code=303)


# --- static files and refusals --------------------------------------------------------------------

_STATIC_FILES = {
    path.relative_to(STATIC).as_posix(): path for path in STATIC.rglob("*") if path.is_file()
}
_MEDIA = {".js": "text/javascript", ".css": "text/css", ".md": "text/plain", ".txt": "text/plain"}


@router.get("/static/{name:path}")
async def static(name: str) -> Response:
    """The console's own files: a fixed set read from the package (no path is ever joined
    from the request), cached for a day."""
    path = _STATIC_FILES.get(name)
    if path is None:
        return Response(status_code=404)
    media = _MEDIA.get(path.suffix, "application/octet-stream")
    if media.startswith("text/"):
        media += "; charset=utf-8"
    return FileResponse(
        path,
        media_type=media,
        headers={"cache-control": "public, max-age=86400", "x-content-type-options": "nosniff"},
    )


async def _console_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ConsoleError)
    problem = error.problem
    if isinstance(problem, ConsoleLoginRequiredError):
        target = "/admin/login?next=" + quote(request.url.path)
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"hx-redirect": target})
        return RedirectResponse(target, status_code=303)
    admin = getattr(request.state, "console_admin", None)
    return render(
        request,
        "error.html",
        {"problem": _problem_message(request, problem), "title": problem.title},
        admin=admin,
        status_code=problem.status,
    )


def install_console(app: FastAPI) -> None:
    """The console's pages, and its refusals answered as pages rather than problem JSON."""
    app.add_exception_handler(ConsoleError, _console_error)
    app.include_router(router)
