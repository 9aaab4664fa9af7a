"""Each report from the owning domains' figures: a fixed number of statements (one or two
set-based reads, and one for the names of the merchants or partners they mention), whatever
the volume of the period."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from service.crediting import reports as crediting
from service.errors import ValidationProblem
from service.ledger import service as ledger
from service.merchants import service as merchants
from service.partners import service as partners
from service.reports.schemas import (
    LiabilityOut,
    MerchantSettlementOut,
    PartnerHealthOut,
    PartnerHealthReportOut,
    PartnerHourOut,
    PeriodOut,
    PointsFlowsOut,
    PointsReportOut,
    ReductionRowOut,
    ReductionsOut,
    ReductionTotalsOut,
    SettlementReportOut,
    SettlementTotalsOut,
)

# A report reads at most this much history at once (a year and a month): enough for an annual
# report with its margins, and it keeps one request from scanning the whole ledger.
MAX_PERIOD = timedelta(days=400)
# Partners' health is read by the hour: a month of hours at most.
MAX_HEALTH_WINDOW = timedelta(days=31)


def check_period(start: datetime, end: datetime, longest: timedelta = MAX_PERIOD) -> None:
    """`to` after `from`, at most `longest` apart; a 422 naming `to` otherwise."""
    if end <= start:
        problem = "must be after from"
    elif end - start > longest:
        problem = f"must be at most {longest.days} days after from"
    else:
        return
    raise ValidationProblem(
        f"to {problem}",
        errors=[{"location": ["query", "to"], "message": problem, "code": "period_invalid"}],
    )


def _period(start: datetime, end: datetime, zone: ZoneInfo) -> PeriodOut:
    return PeriodOut(start=start.astimezone(zone), end=end.astimezone(zone), timezone=zone.key)


async def reductions(
    session: AsyncSession, *, start: datetime, end: datetime, zone: ZoneInfo
) -> ReductionsOut:
    """Reductions by local month, region, action type and partner. Two statements."""
    check_period(start, end)
    rows = await crediting.reductions(session, start=start, end=end, timezone=zone.key)
    names = {p.id: p for p in await partners.list_partners(session)} if rows else {}
    out = [
        ReductionRowOut(
            month=row.month.astimezone(zone).strftime("%Y-%m"),
            region=row.region,
            action_type=row.action_type,
            partner_code=names[row.partner_id].code,
            partner_name=names[row.partner_id].name,
            credits=row.credits,
            grams=row.grams,
            points=row.points,
            retracted=row.retracted,
            retracted_grams=row.retracted_grams,
        )
        for row in rows
    ]
    return ReductionsOut(
        period=_period(start, end, zone),
        totals=ReductionTotalsOut(
            credits=sum(r.credits for r in out),
            grams=sum(r.grams for r in out),
            points=sum(r.points for r in out),
            retracted=sum(r.retracted for r in out),
            retracted_grams=sum(r.retracted_grams for r in out),
        ),
        rows=out,
    )


async def points(
    session: AsyncSession, *, start: datetime, end: datetime, now: datetime, zone: ZoneInfo
) -> PointsReportOut:
    """Points moved in the period and the liability now. Two statements."""
    check_period(start, end)
    flows = await ledger.points_flows(session, start=start, end=end)
    position = await ledger.points_position(session, now=now, horizons_days=(30, 90, 365))
    return PointsReportOut(
        period=_period(start, end, zone),
        as_of=now.astimezone(zone),
        flows=PointsFlowsOut(
            issued=flows.issued,
            redeemed=flows.redeemed,
            refunded=flows.refunded,
            expired=flows.expired,
            reversed=flows.reversed,
            debt_repaid=flows.debt_repaid,
            expired_reclaimed=flows.expired_reclaimed,
            participants_net=flows.participants_net,
        ),
        liability=LiabilityOut(
            outstanding=position.posted,
            held=position.held,
            available=position.posted - position.held,
            debt=position.debt,
            holders=position.holders,
            overdue=position.expiring[0],
            expiring_30_days=position.expiring[30],
            expiring_90_days=position.expiring[90],
            expiring_365_days=position.expiring[365],
        ),
    )


async def settlement(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    fen_per_point: int,
) -> SettlementReportOut:
    """Every merchant's settlement totals for the period. Two statements."""
    check_period(start, end)
    totals = await ledger.merchant_settlement_totals(session, start=start, end=end)
    found = await merchants.merchants_by_id(session, (t.merchant_id for t in totals))
    rows = [
        MerchantSettlementOut(
            merchant_id=t.merchant_id,
            # A settlement account always has its merchant; "?" only if one were deleted.
            merchant_code=found[t.merchant_id].code if t.merchant_id in found else "?",
            merchant_name=found[t.merchant_id].name if t.merchant_id in found else "?",
            redemptions=t.redemptions,
            points_redeemed=t.redeemed,
            refunds=t.refunds,
            points_refunded=t.refunded,
            net_points=t.net,
            value_fen=t.net * fen_per_point,
        )
        for t in totals
    ]
    rows.sort(key=lambda r: r.merchant_code)
    net = sum(r.net_points for r in rows)
    return SettlementReportOut(
        period=_period(start, end, zone),
        fen_per_point=fen_per_point,
        totals=SettlementTotalsOut(
            redemptions=sum(r.redemptions for r in rows),
            points_redeemed=sum(r.points_redeemed for r in rows),
            refunds=sum(r.refunds for r in rows),
            points_refunded=sum(r.points_refunded for r in rows),
            net_points=net,
            value_fen=net * fen_per_point,
        ),
        merchants=rows,
    )


async def partner_health(
    session: AsyncSession, *, start: datetime, end: datetime, zone: ZoneInfo
) -> PartnerHealthReportOut:
    """Each partner's events by hour and outcome over the window. Two statements."""
    check_period(start, end, MAX_HEALTH_WINDOW)
    traffic = await crediting.partner_traffic(session, start=start, end=end, timezone=zone.key)
    by_partner: dict[uuid.UUID, dict[datetime, dict[str, int]]] = defaultdict(dict)
    for row in traffic:
        by_partner[row.partner_id].setdefault(row.hour, {})[row.status] = row.events
    reports = []
    for partner in await partners.list_partners(session) if traffic else []:
        if partner.id not in by_partner:
            continue
        hours = [
            _hour(at.astimezone(zone), mix) for at, mix in sorted(by_partner[partner.id].items())
        ]
        mix: dict[str, int] = defaultdict(int)
        for hour in hours:
            for status, events in hour.outcomes.items():
                mix[status] += events
        reports.append(
            PartnerHealthOut(
                partner_code=partner.code,
                partner_name=partner.name,
                events=sum(hour.events for hour in hours),
                outcomes=dict(sorted(mix.items())),
                rejected=sum(hour.rejected for hour in hours),
                active_hours=len(hours),
                peak_hour_events=max(hour.events for hour in hours),
                hours=hours,
            )
        )
    return PartnerHealthReportOut(period=_period(start, end, zone), partners=reports)


def _hour(at: datetime, mix: dict[str, int]) -> PartnerHourOut:
    return PartnerHourOut(
        hour=at,
        events=sum(mix.values()),
        rejected=sum(n for status, n in mix.items() if status in crediting.REJECTED_STATUSES),
        outcomes=dict(sorted(mix.items())),
    )
