"""The app API for a signed-in participant: only ever their own data."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from service.accounts.dependencies import CurrentReader, CurrentUser
from service.crediting.schemas import OutcomeOut
from service.crediting.service import CreditingSettings
from service.crediting.vouchers import claim_voucher
from service.db import AppReader, DbSession, ReadSession
from service.errors import ForbiddenError
from service.participants import identity_links as links
from service.participants import privacy
from service.participants import service as reads
from service.participants.schemas import (
    BalanceOut,
    Explanation,
    HistoryPage,
    Leaderboard,
    ReductionRow,
)
from service.redemption.service import create_token

router = APIRouter(prefix="/v1/app", tags=["app: points"])
Period = Literal["week", "month"]


class TokenIn(BaseModel):
    token: str = Field(min_length=10, max_length=4096)


class LinkOut(BaseModel):
    id: int
    partner_code: str
    partner_name: str
    linked_at: datetime


class LinkResult(BaseModel):
    link: LinkOut
    released: list[OutcomeOut]


class RedemptionTokenOut(BaseModel):
    token: str
    expires_at: datetime


def _settings(request: Request) -> CreditingSettings:
    state = request.app.state
    return CreditingSettings(
        pepper=state.secrets.identifier_pepper, validity=state.crediting_validity
    )


@router.get("/balance", summary="Available, on hold, owed, and what expires when")
async def balance(user: CurrentReader, app_reader: AppReader) -> BalanceOut:
    return await reads.balance(app_reader, user.participant_id)


@router.get("/reductions", summary="Grams of CO2e by month and action type")
async def reductions(
    user: CurrentReader, session: ReadSession, request: Request
) -> list[ReductionRow]:
    return await reads.reductions(
        session, user.participant_id, request.app.state.settings.program_timezone
    )


@router.get("/history", summary="Every movement of points, newest first")
async def history(
    user: CurrentReader,
    app_reader: AppReader,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,18}$")] = None,
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
    )


@router.get(
    "/credits/{credit_id}/explanation",
    summary="Why a credit is what it is: methodology, factors with sources, inputs, trace",
)
async def explanation(
    credit_id: Annotated[int, Path(ge=1, le=2**62)],
    user: CurrentUser,
    session: DbSession,
    request: Request,
) -> Explanation:
    registry = await request.app.state.registry_cache.get(session)
    return await reads.explain_credit(session, registry, user.participant_id, credit_id)


@router.get("/leaderboards/regions/{region}", summary="Top participants of a region by grams")
async def region_leaderboard(
    region: Annotated[str, Path(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,6}){0,3}$")],
    user: CurrentReader,
    session: ReadSession,
    request: Request,
    period: Period = "week",
) -> Leaderboard:
    board = await reads.leaderboard(
        session,
        request.app.state.redis,
        scope="region",
        key=region,
        participant_filter=reads.region_filter(region),
        period=period,
        now=datetime.now(UTC),
        tz=request.app.state.settings.program_timezone,
    )
    return _mark_caller(board, user.participant_id)


@router.get(
    "/leaderboards/organisations/{organisation_id}",
    summary="Top members of an organisation by grams (members only)",
)
async def organisation_leaderboard(
    organisation_id: uuid.UUID,
    user: CurrentReader,
    session: ReadSession,
    request: Request,
    period: Period = "month",
) -> Leaderboard:
    if await user.role_in(session, organisation_id) is None:
        raise ForbiddenError("only members see their organisation's leaderboard")
    board = await reads.leaderboard(
        session,
        request.app.state.redis,
        scope="organisation",
        key=str(organisation_id),
        participant_filter=reads.organisation_filter(organisation_id),
        period=period,
        now=datetime.now(UTC),
        tz=request.app.state.settings.program_timezone,
    )
    return _mark_caller(board, user.participant_id)


def _mark_caller(board: Leaderboard, participant_id: uuid.UUID) -> Leaderboard:
    for entry in board.entries:
        entry.is_you = entry.participant_id == str(participant_id)
    return board


@router.get("/identity-links", summary="Linked partner identities (never the numbers)")
async def list_links(user: CurrentReader, session: ReadSession) -> list[LinkOut]:
    return [LinkOut(**asdict(v)) for v in await links.list_links(session, user.participant_id)]


@router.post(
    "/identity-links",
    summary="Link a partner identity with the partner's signed link token",
    status_code=201,
)
async def link(
    body: TokenIn, user: CurrentUser, session: DbSession, request: Request
) -> LinkResult:
    state = request.app.state
    now = datetime.now(UTC)
    partner, claims = await links.verified_claims(
        state.partner_credentials,
        state.sessionmaker,
        state.secrets.partner_secret_key,
        body.token,
        "link",
        now,
    )
    registry = await state.registry_cache.get(session)
    released = await links.link_with_token(
        session, registry, _settings(request), partner, claims, user.participant_id, now
    )
    newest = max(await links.list_links(session, user.participant_id), key=lambda v: v.id)
    return LinkResult(link=LinkOut(**asdict(newest)), released=released)


@router.delete(
    "/identity-links/{link_id}", summary="Unlink: no more crediting from it", status_code=204
)
async def unlink(link_id: int, user: CurrentUser, session: DbSession) -> Response:
    await links.unlink(session, user.participant_id, link_id, datetime.now(UTC))
    return Response(status_code=204)


@router.post("/vouchers", summary="Claim a partner's voucher (a scanned QR code)")
async def voucher(
    body: TokenIn, user: CurrentUser, session: DbSession, request: Request
) -> OutcomeOut:
    state = request.app.state
    now = datetime.now(UTC)
    partner, claims = await links.verified_claims(
        state.partner_credentials,
        state.sessionmaker,
        state.secrets.partner_secret_key,
        body.token,
        "voucher",
        now,
    )
    registry = await state.registry_cache.get(session)
    return await claim_voucher(
        session, registry, _settings(request), partner, claims, user.participant_id, now
    )


@router.post(
    "/redemption-tokens",
    summary="A single-use code for a till, valid two minutes",
    status_code=201,
)
async def redemption_token(user: CurrentUser, session: DbSession) -> RedemptionTokenOut:
    issued = await create_token(session, user.participant_id, now=datetime.now(UTC))
    return RedemptionTokenOut(token=issued.token, expires_at=issued.expires_at)


privacy_router = APIRouter(prefix="/v1/app/me", tags=["app: privacy"])


@privacy_router.get("/export", summary="Everything stored about me, as JSON")
async def export_me(user: CurrentUser, session: DbSession) -> dict[str, Any]:
    return await privacy.export(session, user.user_id, user.participant_id)


@privacy_router.delete(
    "",
    summary="Erase my account: personal data removed, the ledger kept under a pseudonym",
    status_code=204,
)
async def erase_me(user: CurrentUser, session: DbSession) -> Response:
    await privacy.erase(session, user.user_id, user.participant_id, datetime.now(UTC))
    return Response(status_code=204)
