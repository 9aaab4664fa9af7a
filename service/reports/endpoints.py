"""The reports under the admin API (`/v1/admin/reports/...`), for auditors and programme
administrators: JSON by default, CSV with `?format=csv`. Read-only, on the autocommit
session: each report is a few statements that need not share one snapshot."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel

from service.admin.dependencies import AdminPrincipal, require
from service.db import ReadSession
from service.dependencies import AppSettings
from service.fields import Instant
from service.reports import service, spreadsheets
from service.reports.schemas import (
    PartnerHealthReportOut,
    PointsReportOut,
    ReductionsOut,
    SettlementReportOut,
)

router = APIRouter(prefix="/v1/admin/reports")
REPORTS = "admin-reports"

ReportReader = Annotated[AdminPrincipal, Depends(require("auditor", "program-admin"))]
From = Annotated[
    Instant,
    Query(alias="from", description="Start of the period (inclusive), with its UTC offset."),
]
To = Annotated[
    Instant,
    Query(
        alias="to",
        description="End of the period (exclusive), after `from` and at most 400 days later"
        " (31 for partners' health).",
    ),
]
Format = Annotated[
    Literal["json", "csv"],
    Query(description="`csv`: UTF-8 with a byte order mark, times in the programme's zone."),
]


def _csv_responses() -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}}}}


def _answer(report: BaseModel, format: str, name: str, render: Callable[[Any], bytes]) -> Response:
    if format == "csv":
        return Response(
            render(report),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}.csv"'},
        )
    return Response(report.model_dump_json(by_alias=True), media_type="application/json")


@router.get(
    "/reductions",
    response_model=ReductionsOut,
    tags=[REPORTS],
    responses=_csv_responses(),
    summary="Reductions in grams by local month, region, action type and partner",
)
async def get_reductions_report(
    admin: ReportReader,
    session: ReadSession,
    settings: AppSettings,
    start: From,
    end: To,
    format: Format = "json",
) -> Response:
    zone = ZoneInfo(settings.program_timezone)
    report = await service.reductions(session, start=start, end=end, zone=zone)
    return _answer(report, format, "reductions", spreadsheets.reductions)


@router.get(
    "/points",
    response_model=PointsReportOut,
    tags=[REPORTS],
    responses=_csv_responses(),
    summary="Points issued, redeemed, expired and reversed; the liability and when it expires",
)
async def get_points_report(
    admin: ReportReader,
    session: ReadSession,
    settings: AppSettings,
    start: From,
    end: To,
    format: Format = "json",
) -> Response:
    zone = ZoneInfo(settings.program_timezone)
    report = await service.points(session, start=start, end=end, now=datetime.now(UTC), zone=zone)
    return _answer(report, format, "points", spreadsheets.points)


@router.get(
    "/settlement",
    response_model=SettlementReportOut,
    tags=[REPORTS],
    responses=_csv_responses(),
    summary="Every merchant's settlement totals for a period",
)
async def get_settlement_report(
    admin: ReportReader,
    session: ReadSession,
    settings: AppSettings,
    start: From,
    end: To,
    format: Format = "json",
) -> Response:
    zone = ZoneInfo(settings.program_timezone)
    report = await service.settlement(
        session, start=start, end=end, zone=zone, fen_per_point=settings.fen_per_point
    )
    return _answer(report, format, "settlement", spreadsheets.settlement)


@router.get(
    "/partner-health",
    response_model=PartnerHealthReportOut,
    tags=[REPORTS],
    responses=_csv_responses(),
    summary="Partners' events per hour, outcome mix and rejects over a window",
)
async def get_partner_health_report(
    admin: ReportReader,
    session: ReadSession,
    settings: AppSettings,
    start: From,
    end: To,
    format: Format = "json",
) -> Response:
    zone = ZoneInfo(settings.program_timezone)
    report = await service.partner_health(session, start=start, end=end, zone=zone)
    return _answer(report, format, "partner-health", spreadsheets.partner_health)
