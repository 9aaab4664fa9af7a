"""The reports as CSV for spreadsheet programs: UTF-8 with a byte order mark (without it,
Excel reads UTF-8 as the local code page and Chinese names come out garbled), one header
row, times in the programme's time zone with their offset, integers as integers."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime

from service.reports.schemas import (
    PartnerHealthReportOut,
    PeriodOut,
    PointsReportOut,
    ReductionsOut,
    SettlementReportOut,
)

BOM = "\ufeff"
# Every outcome an event can have, as the health report's columns (partner_events.status).
OUTCOMES = (
    "received",
    "pending",
    "credited",
    "capped",
    "ineligible",
    "implausible",
    "expired",
    "duplicate",
    "retracted",
)


def _local(at: datetime) -> str:
    """`2026-11-30 08:05:00+08:00`: what a spreadsheet program reads as a date and time."""
    return at.isoformat(sep=" ")


def _document(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _period_columns(period: PeriodOut) -> list[str]:
    return [_local(period.start), _local(period.end)]


def reductions(report: ReductionsOut) -> bytes:
    return _document(
        [
            "from",
            "to",
            "month",
            "region",
            "action_type",
            "partner_code",
            "partner_name",
            "credits",
            "grams",
            "points",
            "retracted",
            "retracted_grams",
        ],
        (
            [
                *_period_columns(report.period),
                row.month,
                row.region or "",
                row.action_type,
                row.partner_code,
                row.partner_name,
                row.credits,
                row.grams,
                row.points,
                row.retracted,
                row.retracted_grams,
            ]
            for row in report.rows
        ),
    )


def points(report: PointsReportOut) -> bytes:
    """One row per figure: the period's flows, then the liability as of `as_of`."""
    period = _period_columns(report.period)
    as_of = _local(report.as_of)
    flows = [[*period, "", "flows", name, value] for name, value in report.flows]
    liability = [["", "", as_of, "liability", name, value] for name, value in report.liability]
    return _document(["from", "to", "as_of", "section", "figure", "points"], [*flows, *liability])


def settlement(report: SettlementReportOut) -> bytes:
    period = _period_columns(report.period)
    rows: list[list[object]] = [
        [
            *period,
            str(m.merchant_id),
            m.merchant_code,
            m.merchant_name,
            m.redemptions,
            m.points_redeemed,
            m.refunds,
            m.points_refunded,
            m.net_points,
            m.value_fen,
        ]
        for m in report.merchants
    ]
    t = report.totals
    rows.append(
        [
            *period,
            "",
            "total",
            "",
            t.redemptions,
            t.points_redeemed,
            t.refunds,
            t.points_refunded,
            t.net_points,
            t.value_fen,
        ]
    )
    return _document(
        [
            "from",
            "to",
            "merchant_id",
            "merchant_code",
            "merchant_name",
            "redemptions",
            "points_redeemed",
            "refunds",
            "points_refunded",
            "net_points",
            "value_fen",
        ],
        rows,
    )


def partner_health(report: PartnerHealthReportOut) -> bytes:
    """One row per partner and local hour with events, with the hour's outcome mix."""
    return _document(
        ["partner_code", "partner_name", "hour", "events", "rejected", *OUTCOMES],
        (
            [
                partner.partner_code,
                partner.partner_name,
                _local(hour.hour),
                hour.events,
                hour.rejected,
                *(hour.outcomes.get(outcome, 0) for outcome in OUTCOMES),
            ]
            for partner in report.partners
            for hour in partner.hours
        ),
    )
