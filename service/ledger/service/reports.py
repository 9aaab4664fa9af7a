"""The programme reports' ledger figures: each a fixed number of set-based statements over a
bounded period (or the materialised balances), never a loop over rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from service.ledger import repository as repo
from service.ledger.schemas import (
    MerchantSettlementTotal,
    PointsFlows,
    PointsPosition,
)
from service.ledger.service._common import _aware


def _flows(rows: Sequence[repo.PointsFlowRow]) -> PointsFlows:
    """Name each sum by what moved it. Pure: which account kind a transaction kind moves
    points to or from is the ledger's own knowledge (see `service.ledger.service`)."""
    sums: dict[tuple[str, str, bool], int] = {}
    for row in rows:
        sums[(row.transaction_kind, row.account_kind, row.incoming)] = row.total

    def total(kind: str, account: str, incoming: bool) -> int:
        return abs(sums.get((kind, account, incoming), 0))

    return PointsFlows(
        issued=total("credit", "issuance", False),
        redeemed=total("redemption", "settlement", True),
        refunded=total("refund", "settlement", False),
        expired=total("expiry", "expiry", True),
        reversed=total("reversal", "participant", False),
        # A debt payment posts points from the participant back to issuance, in a credit, a
        # capture, a refund or a released hold's own transaction.
        debt_repaid=sum(
            total(kind, "issuance", True)
            for kind in ("credit", "redemption", "refund", "debt_payment")
        ),
        expired_reclaimed=total("reversal", "expiry", False),
        participants_net=sum(row.total for row in rows if row.account_kind == "participant"),
    )


async def points_flows(session: AsyncSession, *, start: datetime, end: datetime) -> PointsFlows:
    """POINTS issued, redeemed, refunded, expired, reversed and repaid as debt by the ledger
    transactions made in [start, end). One statement."""
    _aware(start, "start")
    _aware(end, "end")
    return _flows(await repo.points_flows(session, start, end))


async def points_position(
    session: AsyncSession, *, now: datetime, horizons_days: Sequence[int] = (30, 90, 365)
) -> PointsPosition:
    """The liability now: participants' posted, held and owed points, and the open points
    falling due within each horizon (cumulative, counted from `now`; 0 = already past their
    expiry and waiting for the expiry job). One statement."""
    _aware(now, "now")
    days = sorted({0, *horizons_days})
    row = await repo.points_position(session, [now + timedelta(days=d) for d in days])
    return PointsPosition(
        posted=row.posted,
        held=row.held,
        debt=row.debt,
        holders=row.holders,
        expiring=dict(zip(days, row.expiring, strict=True)),
    )


async def merchant_settlement_totals(
    session: AsyncSession, *, start: datetime, end: datetime
) -> list[MerchantSettlementTotal]:
    """Per merchant with any, captures and refunds posted to its settlement accounts in
    [start, end), by merchant id. One statement."""
    _aware(start, "start")
    _aware(end, "end")
    return [
        MerchantSettlementTotal(r.merchant_id, r.redemptions, r.redeemed, r.refunds, r.refunded)
        for r in await repo.settlement_totals(session, start, end)
    ]
