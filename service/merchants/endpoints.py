"""The merchant API's own calls: the settlement statement. (The till's redemption calls
are `service.redemption.endpoints`.)"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from fastapi.responses import Response

from service.db import DbSession
from service.dependencies import AppSettings
from service.errors import ValidationProblem
from service.merchants import service
from service.merchants.auth import MerchantKey
from service.merchants.schemas import StatementOut

router = APIRouter(prefix="/v1/merchant", tags=["merchant-redemptions"])
_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"description": "Missing, unknown or revoked merchant key"},
    403: {"description": "Key lacks the scope, or merchant suspended"},
    409: {"description": "Request with this key in progress, or the hold already resolved"},
    422: {"description": "Idempotency key reused with another body; bad code; bad amount"},
}


@router.get(
    "/settlement",
    summary="Statement for a period: redemptions, refunds, net points, value in CNY",
    response_model=StatementOut,
    responses={
        **_RESPONSES,
        200: {"content": {"application/json": {}, "text/csv": {}}},
    },
)
async def get_settlement(
    merchant: MerchantKey,
    session: DbSession,
    settings: AppSettings,
    start: Annotated[datetime, Query(alias="from")],
    end: Annotated[datetime, Query(alias="to")],
    format: Literal["json", "csv"] = "json",
) -> Response:
    merchant.require("settlement")
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise ValidationProblem("from and to need time zones, and to must be after from")
    row = await service.get_merchant(session, merchant.merchant_id)
    result = await service.statement(
        session,
        row,
        start=start,
        end=end,
        fen_per_point=settings.fen_per_point,
    )
    if format == "json":
        return Response(result.model_dump_json(), media_type="application/json")
    # For spreadsheets: times in the programme's timezone (with their offset), and a UTF-8
    # byte order mark, without which Excel reads UTF-8 as the local code page and garbles
    # Chinese text.
    zone = ZoneInfo(settings.program_timezone)
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(["at", "kind", "transaction_id", "points", "value_fen"])
    for line in result.lines:
        writer.writerow(
            [
                line.at.astimezone(zone).isoformat(),
                line.kind,
                line.transaction_id,
                line.points,
                line.points * result.fen_per_point,
            ]
        )
    writer.writerow(["total", "", "", result.net_points, result.value_fen])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8")
