"""The till's redemption calls (a merchant's scoped key, each with an Idempotency-Key) and
the app's offer catalogue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from service.db import DbSession
from service.dependencies import AppSettings
from service.fields import (
    CODE_PATTERN,
    Cursor,
    Limit,
    RegionQuery,
    cursor_offset,
    next_offset_cursor,
)
from service.idempotency import Idempotent
from service.merchants.auth import MerchantKey
from service.redemption import service
from service.redemption.schemas import (
    AuthoriseIn,
    CaptureIn,
    OfferPage,
    RedemptionOut,
    RefundIn,
)

router = APIRouter(prefix="/v1/merchant", tags=["merchant-redemptions"])
catalogue_router = APIRouter(prefix="/v1/app", tags=["app-offers"])
_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"description": "Missing, unknown or revoked merchant key"},
    403: {"description": "Key lacks the scope, or merchant suspended"},
    409: {"description": "Request with this key in progress, or the hold already resolved"},
    422: {"description": "Idempotency key reused with another body; bad code; bad amount"},
}


@router.post(
    "/redemptions",
    summary="Authorise: the customer's code and an offer (or points) become a hold",
    status_code=201,
    response_model=RedemptionOut,
    responses=_RESPONSES,
)
async def authorise_redemption(
    body: AuthoriseIn,
    merchant: MerchantKey,
    session: DbSession,
    idempotency: Idempotent,
    settings: AppSettings,
) -> Response:
    merchant.require("redeem")

    async def work() -> RedemptionOut:
        return await service.authorise(
            session,
            merchant_id=merchant.merchant_id,
            terminal_id=merchant.terminal_id,
            redemption_token=body.redemption_token,
            offer_id=body.offer_id,
            points=body.points,
            now=datetime.now(UTC),
            hold_for=timedelta(seconds=settings.hold_timeout_seconds),
        )

    return await idempotency.run(
        merchant.merchant_id,
        "authorise",
        body.model_dump(mode="json"),
        work,
        status_code=201,
    )


@router.post(
    "/redemptions/{redemption_id}/capture",
    summary="Capture the hold, in full or in part, once",
    response_model=RedemptionOut,
    responses=_RESPONSES,
)
async def capture_redemption(
    redemption_id: uuid.UUID,
    body: CaptureIn,
    merchant: MerchantKey,
    session: DbSession,
    idempotency: Idempotent,
) -> Response:
    merchant.require("redeem")

    async def work() -> RedemptionOut:
        return await service.capture(
            session,
            merchant.merchant_id,
            redemption_id,
            body.points,
            now=datetime.now(UTC),
            request_key=idempotency.key or "",
            terminal_id=merchant.terminal_id,
        )

    return await idempotency.run(merchant.merchant_id, "capture", body.model_dump(), work)


@router.post(
    "/redemptions/{redemption_id}/void",
    summary="Void the hold: the points come back",
    response_model=RedemptionOut,
    responses=_RESPONSES,
)
async def void_redemption(
    redemption_id: uuid.UUID,
    merchant: MerchantKey,
    session: DbSession,
    idempotency: Idempotent,
) -> Response:
    merchant.require("redeem")

    async def work() -> RedemptionOut:
        return await service.void(
            session,
            merchant.merchant_id,
            redemption_id,
            request_key=idempotency.key or "",
            terminal_id=merchant.terminal_id,
        )

    return await idempotency.run(merchant.merchant_id, "void", {}, work)


@router.post(
    "/redemptions/{redemption_id}/refunds",
    summary="Refund captured points to the lots they came from",
    response_model=RedemptionOut,
    responses=_RESPONSES,
)
async def refund_redemption(
    redemption_id: uuid.UUID,
    body: RefundIn,
    merchant: MerchantKey,
    session: DbSession,
    idempotency: Idempotent,
) -> Response:
    merchant.require("refund")

    async def work() -> RedemptionOut:
        return await service.refund(
            session,
            merchant.merchant_id,
            redemption_id,
            body.points,
            refund_key=idempotency.key or "",
            terminal_id=merchant.terminal_id,
        )

    return await idempotency.run(merchant.merchant_id, "refund", body.model_dump(), work)


@router.get(
    "/redemptions/{redemption_id}",
    summary="A redemption as the ledger says it stands",
    responses=_RESPONSES,
)
async def get_redemption(
    redemption_id: uuid.UUID, merchant: MerchantKey, session: DbSession
) -> RedemptionOut:
    if not merchant.scopes & {"redeem", "refund"}:
        merchant.require("redeem")
    await service.redemption_for(session, merchant.merchant_id, redemption_id, merchant.terminal_id)
    return await service.view(session, merchant.merchant_id, redemption_id)


@catalogue_router.get("/offers", summary="The offer catalogue (public)")
async def list_offers(
    session: DbSession,
    region: RegionQuery = None,
    merchant: Annotated[
        str | None, Query(pattern=CODE_PATTERN, description="A merchant's code")
    ] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> OfferPage:
    offset = cursor_offset(cursor)
    rows = await service.catalogue(
        session,
        now=datetime.now(UTC),
        region=region,
        merchant_code=merchant,
        offset=offset,
        limit=limit + 1,
    )
    return OfferPage(items=rows[:limit], next_cursor=next_offset_cursor(offset, limit, len(rows)))
