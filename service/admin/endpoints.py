"""The admin API (`/v1/admin/...`): administrators, the audit trail, the methodology
lifecycle. Each endpoint names the roles it admits; `tests/admin/test_authorisation.py`
checks every endpoint against every role."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, status
from fastapi.responses import StreamingResponse

from service import audit
from service.accounts.dependencies import keyring
from service.admin import service
from service.admin.dependencies import AdminPrincipal, require
from service.admin.schemas import (
    AdminCreatedOut,
    AdminIn,
    AdminLoginIn,
    AdminOut,
    AdminPageOut,
    AdminPatch,
    AdminTokenOut,
    AuditEntryOut,
    AuditPageOut,
    BacktestIn,
    BacktestOut,
    ChangeOut,
    DiffOut,
    DraftDetailOut,
    DraftIn,
    DraftOut,
    DraftPageOut,
    RetireIn,
    ScheduledOut,
    ScheduleIn,
    UnscheduledOut,
    VersionOut,
    VersionPageOut,
)
from service.config import Settings
from service.db import DbSession, StreamingSession
from service.dependencies import AppSecrets, AppSettings, MethodologyRegistry, RedisClient
from service.fields import (
    AUDIT_ACTION_MAX_LENGTH,
    INT64_MAX,
    METHODOLOGY_ID_MAX_LENGTH,
    Cursor,
    Instant,
    Limit,
    cursor_offset,
    next_offset_cursor,
)
from service.methodologies import lifecycle
from service.methodologies.backtest import backtest as run_backtest
from service.models import Admin, AdminAuditEntry, MethodologyDraft, MethodologyVersion

router = APIRouter(prefix="/v1/admin")
# Tags name the user group (`admin-*`); service/openapi.py groups them as "Administrators".
ACCOUNTS = "admin-accounts"
AUDIT = "admin-audit"
METHODOLOGIES = "admin-methodologies"

ProgramAdmin = Annotated[AdminPrincipal, Depends(require("program-admin"))]
AdminsReader = Annotated[AdminPrincipal, Depends(require("program-admin", "auditor"))]
Auditor = Annotated[AdminPrincipal, Depends(require("auditor"))]
AnyAdmin = Annotated[AdminPrincipal, Depends(require())]
Author = Annotated[AdminPrincipal, Depends(require("methodology-author"))]
Approver = Annotated[AdminPrincipal, Depends(require("methodology-approver"))]
MethodologyReader = Annotated[
    AdminPrincipal,
    Depends(require("methodology-author", "methodology-approver", "auditor", "program-admin")),
]
DraftId = Annotated[int, Path(ge=1, le=INT64_MAX)]
MethodologyId = Annotated[
    str, Path(max_length=METHODOLOGY_ID_MAX_LENGTH, pattern=r"^[a-z][a-z0-9_.\-]*$")
]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]
VersionCursor = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9_-]{1,400}$",
        description="The `next_cursor` of the previous page; absent for the first page.",
    ),
]


def _admin_out(admin: Admin) -> AdminOut:
    return AdminOut(
        id=admin.id,
        login=admin.login,
        display_name=admin.display_name,
        roles=sorted(admin.roles),
        status=admin.status,
        created_at=admin.created_at,
    )


def _draft_out(draft: MethodologyDraft) -> DraftOut:
    return DraftOut(
        id=draft.id,
        methodology_id=draft.methodology_id,
        version=draft.version,
        action_type=draft.action_type,
        region=draft.region,
        content_hash=draft.content_hash,
        author_id=draft.author_id,
        created_at=draft.created_at,
        approved_by=draft.approved_by,
        approved_at=draft.approved_at,
        activate_at=draft.activate_at,
        status=(
            "scheduled"
            if draft.activate_at is not None
            else "approved"
            if draft.approved_by is not None
            else "draft"
        ),
    )


def _version_out(row: MethodologyVersion) -> VersionOut:
    return VersionOut(
        methodology_id=row.methodology_id,
        version=row.version,
        action_type=row.action_type,
        region=row.region,
        effective_from=row.effective_from,
        effective_to=row.effective_to,
        content_hash=row.content_hash,
        filed_at=row.filed_at,
    )


def _entry_out(entry: AdminAuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        id=entry.id,
        occurred_at=entry.occurred_at,
        admin_id=entry.admin_id,
        actor=entry.actor,
        role=entry.role,
        action=entry.action,
        target_type=entry.target_type,
        target_id=entry.target_id,
        before_digest=entry.before_digest.hex() if entry.before_digest is not None else None,
        after_digest=entry.after_digest.hex() if entry.after_digest is not None else None,
        request_id=entry.request_id,
        detail=entry.detail,
        prev_hash=bytes(entry.prev_hash).hex(),
        hash=bytes(entry.hash).hex(),
    )


def _min_lead(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.methodology_min_lead_seconds)


# --- administrators ---------------------------------------------------------------------------


@router.post(
    "/login",
    response_model=AdminTokenOut,
    tags=[ACCOUNTS],
    responses={401: {"description": "`admin-login-failed`"}, 429: {"description": "throttled"}},
    summary="Sign in with password and TOTP code",
)
async def admin_login(
    body: AdminLoginIn,
    request: Request,
    session: DbSession,
    redis: RedisClient,
    secrets: AppSecrets,
) -> AdminTokenOut:
    done = await service.login(
        session,
        redis,
        keyring(request),
        secrets.partner_secret_key,
        login=body.login,
        password=body.password,
        code=body.totp,
        address=request.client.host if request.client else "unknown",
        request_id=getattr(request.state, "request_id", None),
    )
    return AdminTokenOut(
        admin_id=done.admin.id,
        access_token=done.access_token,
        expires_in=done.expires_in,
        roles=sorted(done.admin.roles),
    )


@router.get("/me", response_model=AdminOut, tags=[ACCOUNTS], summary="The signed-in administrator")
async def get_current_admin(admin: AnyAdmin, session: DbSession) -> AdminOut:
    return _admin_out(await service.get_admin(session, admin.admin_id))


@router.get(
    "/administrators",
    response_model=AdminPageOut,
    tags=[ACCOUNTS],
    summary="Every administrator, by login",
)
async def list_administrators(
    admin: AdminsReader, session: DbSession, cursor: Cursor = None, limit: Limit = 50
) -> AdminPageOut:
    offset = cursor_offset(cursor)
    rows = await service.list_admins(session, offset=offset, limit=limit + 1)
    return AdminPageOut(
        items=[_admin_out(a) for a in rows[:limit]],
        next_cursor=next_offset_cursor(offset, limit, len(rows)),
    )


@router.post(
    "/administrators",
    status_code=status.HTTP_201_CREATED,
    response_model=AdminCreatedOut,
    tags=[ACCOUNTS],
    summary="Create an administrator (the TOTP provisioning URI is shown once)",
)
async def create_administrator(
    body: AdminIn, admin: ProgramAdmin, secrets: AppSecrets, session: DbSession
) -> AdminCreatedOut:
    enrolled = await service.create_admin(
        session,
        secrets.partner_secret_key,
        admin.actor,
        login=body.login,
        display_name=body.display_name,
        password=body.password,
        roles=list(body.roles),
    )
    return AdminCreatedOut(
        **_admin_out(enrolled.admin).model_dump(),
        totp_provisioning_uri=enrolled.provisioning_uri,
    )


@router.patch(
    "/administrators/{admin_id}",
    response_model=AdminOut,
    tags=[ACCOUNTS],
    summary="Change an administrator's roles or status (ends their current tokens)",
)
async def update_administrator(
    admin_id: uuid.UUID, body: AdminPatch, admin: ProgramAdmin, session: DbSession
) -> AdminOut:
    updated = await service.update_admin(
        session,
        admin.actor,
        admin_id,
        roles=list(body.roles) if body.roles is not None else None,
        status=body.status,
    )
    return _admin_out(updated)


# --- the audit trail ------------------------------------------------------------------------


@router.get(
    "/audit", response_model=AuditPageOut, tags=[AUDIT], summary="The audit trail, oldest first"
)
async def list_audit_entries(
    admin: Auditor,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = 100,
    action: Annotated[
        str | None, Query(max_length=AUDIT_ACTION_MAX_LENGTH, pattern=r"^[a-z.\-]+$")
    ] = None,
) -> AuditPageOut:
    page = await audit.list_entries(session, cursor=cursor, limit=limit, action=action)
    return AuditPageOut(items=[_entry_out(e) for e in page.entries], next_cursor=page.next_cursor)


class NdjsonResponse(StreamingResponse):
    media_type = "application/x-ndjson"


@router.get(
    "/audit/export",
    tags=[AUDIT],
    summary="Export the audit trail of a period as NDJSON (one entry a line)",
    response_class=NdjsonResponse,
    responses={
        200: {
            "description": "One audit entry (as in `GET /v1/admin/audit`) a line, oldest "
            "first, streamed as it is read.",
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    },
)
async def export_audit_entries(
    admin: Auditor,
    session: StreamingSession,
    since: Annotated[Instant | None, Query(description="from this instant (inclusive)")] = None,
    until: Annotated[Instant | None, Query(description="to this instant (exclusive)")] = None,
) -> NdjsonResponse:
    async def lines() -> AsyncIterator[bytes]:
        async for entry in audit.stream_entries(session, since=since, until=until):
            yield orjson.dumps(_entry_out(entry).model_dump(mode="json")) + b"\n"

    return NdjsonResponse(
        lines(), headers={"content-disposition": 'attachment; filename="audit.ndjson"'}
    )


# --- the methodology lifecycle --------------------------------------------------------------


@router.get(
    "/methodologies",
    response_model=VersionPageOut,
    tags=[METHODOLOGIES],
    summary="Every filed methodology version",
)
async def list_methodology_versions(
    admin: MethodologyReader, session: DbSession, cursor: VersionCursor = None, limit: Limit = 50
) -> VersionPageOut:
    page = await lifecycle.filed_versions(session, cursor=cursor, limit=limit)
    return VersionPageOut(items=[_version_out(v) for v in page.items], next_cursor=page.next_cursor)


@router.post(
    "/methodologies/{methodology_id}/versions/{version}/retire",
    response_model=VersionOut,
    tags=[METHODOLOGIES],
    summary="End a filed version's period at an exact instant",
)
async def retire_methodology_version(
    methodology_id: MethodologyId,
    version: VersionNumber,
    body: RetireIn,
    admin: Approver,
    settings: AppSettings,
    registry: MethodologyRegistry,
    session: DbSession,
) -> VersionOut:
    row = await lifecycle.retire(
        session, admin.actor, methodology_id, version, body.at, min_lead=_min_lead(settings)
    )
    registry.invalidate()
    return _version_out(row)


@router.get(
    "/methodology-drafts",
    response_model=DraftPageOut,
    tags=[METHODOLOGIES],
    summary="Drafts, newest first",
)
async def list_methodology_drafts(
    admin: MethodologyReader, session: DbSession, cursor: Cursor = None, limit: Limit = 50
) -> DraftPageOut:
    page = await lifecycle.list_drafts(session, cursor=cursor, limit=limit)
    return DraftPageOut(items=[_draft_out(d) for d in page.items], next_cursor=page.next_cursor)


@router.post(
    "/methodology-drafts",
    status_code=status.HTTP_201_CREATED,
    response_model=DraftOut,
    tags=[METHODOLOGIES],
    responses={422: {"description": "`methodology-invalid`: each problem with line and column"}},
    summary="Upload a draft (YAML)",
)
async def create_methodology_draft(body: DraftIn, admin: Author, session: DbSession) -> DraftOut:
    return _draft_out(await lifecycle.create_draft(session, admin.actor, body.source_yaml))


@router.get(
    "/methodology-drafts/{draft_id}",
    response_model=DraftDetailOut,
    tags=[METHODOLOGIES],
    summary="One draft, with its YAML",
)
async def get_methodology_draft(
    draft_id: DraftId, admin: MethodologyReader, session: DbSession
) -> DraftDetailOut:
    draft = await lifecycle.get_draft(session, draft_id)
    return DraftDetailOut(**_draft_out(draft).model_dump(), source_yaml=draft.source_yaml)


@router.get(
    "/methodology-drafts/{draft_id}/diff",
    response_model=DiffOut,
    tags=[METHODOLOGIES],
    summary="The draft against the version in force",
)
async def diff_methodology_draft(
    draft_id: DraftId, admin: MethodologyReader, session: DbSession
) -> DiffOut:
    result = await lifecycle.diff_draft(session, draft_id)
    against = (
        f"{result.in_force.methodology_id}@v{result.in_force.version}"
        if result.in_force is not None
        else None
    )
    return DiffOut(
        draft_id=draft_id,
        against=against,
        changes=[
            ChangeOut(
                section=c.section,
                name=c.name,
                field=c.field,
                before=_jsonable(c.before),
                after=_jsonable(c.after),
                text=str(c),
            )
            for c in result.changes
        ],
    )


def _jsonable(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=str))


@router.post(
    "/methodology-drafts/{draft_id}/approve",
    response_model=DraftOut,
    tags=[METHODOLOGIES],
    responses={403: {"description": "`four-eyes`: the author cannot approve"}},
    summary="Approve a draft (not its author)",
)
async def approve_methodology_draft(
    draft_id: DraftId, admin: Approver, session: DbSession
) -> DraftOut:
    return _draft_out(await lifecycle.approve(session, admin.actor, draft_id))


@router.post(
    "/methodology-drafts/{draft_id}/schedule",
    response_model=ScheduledOut,
    tags=[METHODOLOGIES],
    summary="File an approved draft, in force from an exact instant",
)
async def schedule_methodology_draft(
    draft_id: DraftId,
    body: ScheduleIn,
    admin: Approver,
    settings: AppSettings,
    registry: MethodologyRegistry,
    session: DbSession,
) -> ScheduledOut:
    done = await lifecycle.schedule(
        session, admin.actor, draft_id, body.activate_at, min_lead=_min_lead(settings)
    )
    registry.invalidate()
    closes = (
        f"{done.previous.methodology_id}@v{done.previous.version}"
        if done.previous is not None
        else None
    )
    return ScheduledOut(draft=_draft_out(done.draft), closes=closes)


@router.post(
    "/methodology-drafts/{draft_id}/unschedule",
    response_model=UnscheduledOut,
    tags=[METHODOLOGIES],
    responses={
        409: {
            "description": "`unschedule-too-late`: the instant has passed or is too near; "
            "`methodology-lifecycle-conflict`: not scheduled, or a later version follows it"
        }
    },
    summary="Undo a schedule before its instant (the previous version's period is restored)",
)
async def unschedule_methodology_draft(
    draft_id: DraftId,
    admin: Approver,
    settings: AppSettings,
    registry: MethodologyRegistry,
    session: DbSession,
) -> UnscheduledOut:
    done = await lifecycle.unschedule(session, admin.actor, draft_id, min_lead=_min_lead(settings))
    registry.invalidate()
    reopens = (
        f"{done.reopened.methodology_id}@v{done.reopened.version}"
        if done.reopened is not None
        else None
    )
    return UnscheduledOut(draft=_draft_out(done.draft), reopens=reopens)


@router.post(
    "/methodology-drafts/{draft_id}/backtest",
    response_model=BacktestOut,
    tags=[METHODOLOGIES],
    summary="Back-test a draft over the stored events of a window (writes nothing)",
)
async def backtest_methodology_draft(
    draft_id: DraftId, body: BacktestIn, admin: MethodologyReader, session: DbSession
) -> BacktestOut:
    draft = await lifecycle.get_draft(session, draft_id)
    report = await run_backtest(session, lifecycle.compile_version(draft), body.start, body.end)
    return BacktestOut(draft_id=draft_id, **report.as_json(body.top))


# Partners and merchants (program-admin): their own module, the same router and prefix.
from service.admin.organisation_endpoints import router as _organisations  # noqa: E402

router.include_router(_organisations)
