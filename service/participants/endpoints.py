"""The app API for a signed-in participant: only ever their own data."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from service.accounts.dependencies import CurrentReader, CurrentUser
from service.crediting.dependencies import CreditingConfig
from service.crediting.schemas import OutcomeOut
from service.crediting.vouchers import claim_voucher
from service.db import AppReader, DbSession, ReadSession
from service.dependencies import (
    AppSecrets,
    AppSettings,
    Language,
    MethodologyRegistry,
    RedisClient,
    SessionMaker,
)
from service.errors import ForbiddenError
from service.fields import (
    CURSOR_PATTERN,
    Cursor,
    Limit,
    RegionPath,
    cursor_offset,
    id_path,
    next_offset_cursor,
    plain_text,
)
from service.i18n import _
from service.participants import identity_links as links
from service.participants import privacy
from service.participants import service as reads
from service.participants.schemas import (
    BalanceOut,
    Explanation,
    HistoryPage,
    Leaderboard,
    ReductionPage,
)
from service.partners.auth import PartnerCredentials
from service.redemption.service import create_token

router = APIRouter(prefix="/v1/app", tags=["app-points"])
Period = Literal["week", "month"]


class TokenIn(BaseModel):
    token: str = plain_text(4096, min_length=10)


class LinkOut(BaseModel):
    id: int
    partner_code: str
    partner_name: str
    linked_at: datetime


class LinkPage(BaseModel):
    items: list[LinkOut]
    next_cursor: str | None


class LinkResult(BaseModel):
    link: LinkOut
    released: list[OutcomeOut]


class RedemptionTokenOut(BaseModel):
    token: str
    expires_at: datetime


@router.get("/balance", summary="Available, on hold, owed, and what expires when")
async def get_balance(
    user: CurrentReader, app_reader: AppReader, settings: AppSettings
) -> BalanceOut:
    return await reads.balance(app_reader, user.participant_id, ZoneInfo(settings.program_timezone))


@router.get("/reductions", summary="Grams of CO2e by month and action type, newest first")
async def list_reductions(
    user: CurrentReader,
    session: ReadSession,
    settings: AppSettings,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ReductionPage:
    offset = cursor_offset(cursor)
    rows = await reads.reductions(
        session,
        user.participant_id,
        settings.program_timezone,
        offset=offset,
        limit=limit + 1,
    )
    return ReductionPage(
        items=rows[:limit], next_cursor=next_offset_cursor(offset, limit, len(rows))
    )


@router.get("/history", summary="Every movement of points, newest first")
async def list_history(
    user: CurrentReader,
    app_reader: AppReader,
    settings: AppSettings,
    language: Language,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    kind: Annotated[
        list[Literal["credit", "reversal", "redemption", "refund", "expiry", "debt_payment"]]
        | None,
        Query(),
    ] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> HistoryPage:
    return await reads.history(
        app_reader,
        user.participant_id,
        cursor=cursor,
        limit=limit,
        kinds=list(kind) if kind else None,
        since=since,
        until=until,
        language=language,
        tz=ZoneInfo(settings.program_timezone),
    )


@router.get(
    "/credits/{credit_id}/explanation",
    summary="Why a credit is what it is: methodology, factors with sources, inputs, trace",
)
async def explain_credit(
    credit_id: Annotated[int, id_path("The credit's id")],
    user: CurrentUser,
    session: DbSession,
    registry_cache: MethodologyRegistry,
    language: Language,
    settings: AppSettings,
) -> Explanation:
    registry = await registry_cache.get(session)
    return await reads.explain_credit(
        session,
        registry,
        user.participant_id,
        credit_id,
        language,
        ZoneInfo(settings.program_timezone),
    )


@router.get("/leaderboards/regions/{region}", summary="Top participants of a region by grams")
async def get_region_leaderboard(
    region: RegionPath,
    user: CurrentReader,
    session: ReadSession,
    redis: RedisClient,
    settings: AppSettings,
    period: Period = "week",
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=reads.LEADERBOARD_SIZE)] = 20,
) -> Leaderboard:
    board = await reads.leaderboard(
        session,
        redis,
        scope="region",
        key=region,
        participant_filter=reads.region_filter(region),
        period=period,
        now=datetime.now(UTC),
        tz=settings.program_timezone,
        offset=cursor_offset(cursor),
        limit=limit,
    )
    return _mark_caller(board, user.participant_id)


@router.get(
    "/leaderboards/organisations/{organisation_id}",
    summary="Top members of an organisation by grams (members only)",
)
async def get_organisation_leaderboard(
    organisation_id: uuid.UUID,
    user: CurrentReader,
    session: ReadSession,
    redis: RedisClient,
    settings: AppSettings,
    period: Period = "month",
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=reads.LEADERBOARD_SIZE)] = 20,
) -> Leaderboard:
    if await user.role_in(session, organisation_id) is None:
        raise ForbiddenError(_("only members see their organisation's leaderboard"))
    board = await reads.leaderboard(
        session,
        redis,
        scope="organisation",
        key=str(organisation_id),
        participant_filter=reads.organisation_filter(organisation_id),
        period=period,
        now=datetime.now(UTC),
        tz=settings.program_timezone,
        offset=cursor_offset(cursor),
        limit=limit,
    )
    return _mark_caller(board, user.participant_id)


def _mark_caller(board: Leaderboard, participant_id: uuid.UUID) -> Leaderboard:
    for entry in board.entries:
        entry.is_you = entry.participant_id == str(participant_id)
    return board


@router.get("/identity-links", summary="Linked partner identities (never the numbers)")
async def list_identity_links(
    user: CurrentReader, session: ReadSession, cursor: Cursor = None, limit: Limit = 50
) -> LinkPage:
    offset = cursor_offset(cursor)
    views = await links.list_links(session, user.participant_id, offset=offset, limit=limit + 1)
    return LinkPage(
        items=[LinkOut(**asdict(v)) for v in views[:limit]],
        next_cursor=next_offset_cursor(offset, limit, len(views)),
    )


@router.post(
    "/identity-links",
    summary="Link a partner identity with the partner's signed link token",
    status_code=201,
)
async def link_identity(
    body: TokenIn,
    user: CurrentUser,
    session: DbSession,
    credentials: PartnerCredentials,
    sessionmaker: SessionMaker,
    secrets: AppSecrets,
    registry_cache: MethodologyRegistry,
    settings: CreditingConfig,
    language: Language,
) -> LinkResult:
    now = datetime.now(UTC)
    partner, claims = await links.verified_claims(
        credentials, sessionmaker, secrets.partner_secret_key, body.token, "link", now
    )
    registry = await registry_cache.get(session)
    released = await links.link_with_token(
        session, registry, settings, partner, claims, user.participant_id, now
    )
    newest = max(await links.list_links(session, user.participant_id), key=lambda v: v.id)
    return LinkResult(
        link=LinkOut(**asdict(newest)),
        released=[reads.localise_outcome(o, registry, language) for o in released],
    )


@router.delete(
    "/identity-links/{link_id}", summary="Unlink: no more crediting from it", status_code=204
)
async def unlink_identity(
    link_id: Annotated[int, id_path("The link's id")], user: CurrentUser, session: DbSession
) -> Response:
    await links.unlink(session, user.participant_id, link_id, datetime.now(UTC))
    return Response(status_code=204)


@router.post("/vouchers", summary="Claim a partner's voucher (a scanned QR code)")
async def claim_voucher_code(
    body: TokenIn,
    user: CurrentUser,
    session: DbSession,
    credentials: PartnerCredentials,
    sessionmaker: SessionMaker,
    secrets: AppSecrets,
    registry_cache: MethodologyRegistry,
    settings: CreditingConfig,
    language: Language,
) -> OutcomeOut:
    now = datetime.now(UTC)
    partner, claims = await links.verified_claims(
        credentials, sessionmaker, secrets.partner_secret_key, body.token, "voucher", now
    )
    registry = await registry_cache.get(session)
    outcome = await claim_voucher(
        session, registry, settings, partner, claims, user.participant_id, now
    )
    return reads.localise_outcome(outcome, registry, language)


@router.post(
    "/redemption-tokens",
    summary="A single-use code for a till, valid two minutes",
    status_code=201,
)
async def create_redemption_token(
    user: CurrentUser, session: DbSession, settings: AppSettings
) -> RedemptionTokenOut:
    issued = await create_token(session, user.participant_id, now=datetime.now(UTC))
    # Shown to the citizen: in the programme's time zone (the same instant).
    return RedemptionTokenOut(
        token=issued.token,
        expires_at=issued.expires_at.astimezone(ZoneInfo(settings.program_timezone)),
    )


privacy_router = APIRouter(prefix="/v1/app/me", tags=["app-privacy"])


@privacy_router.get("/export", summary="Everything stored about me, as JSON")
async def export_my_data(user: CurrentUser, session: DbSession) -> dict[str, Any]:
    # A download of whole lists (not a page), so its schema stays a free-form object.
    return (await privacy.export(session, user.user_id, user.participant_id)).to_json()


@privacy_router.delete(
    "",
    summary="Erase my account: personal data removed, the ledger kept under a pseudonym",
    status_code=204,
)
async def erase_me(user: CurrentUser, session: DbSession) -> Response:
    await privacy.erase(session, user.user_id, user.participant_id, datetime.now(UTC))
    return Response(status_code=204)
