"""The programme reports' ledger figures (`service.ledger.service.reports`): set-based, one
statement each, whatever the volume."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import json_text

_POINTS_FLOWS = text(
    # Every POINTS posting of the period's transactions, summed by the transaction's kind, the
    # kind of account it moved and its direction: a handful of rows, whatever the volume.
    """
    SELECT t.kind, a.kind AS account_kind, p.amount > 0 AS incoming,
           CAST(sum(p.amount) AS bigint) AS total, count(*) AS postings
    FROM ledger_transactions AS t
    JOIN ledger_postings AS p ON p.transaction_id = t.id AND p.asset = 'POINTS'
    JOIN ledger_accounts AS a ON a.id = p.account_id
    WHERE t.created_at >= :start AND t.created_at < :end
    GROUP BY t.kind, a.kind, p.amount > 0
    """
)


@dataclass(frozen=True, slots=True)
class PointsFlowRow:
    transaction_kind: str
    account_kind: str
    incoming: bool
    total: int
    postings: int


async def points_flows(
    session: AsyncSession, start: datetime, end: datetime
) -> list[PointsFlowRow]:
    """POINTS moved by the transactions made in [start, end), by (transaction kind, account
    kind, direction). One statement."""
    rows = await session.execute(_POINTS_FLOWS, {"start": start, "end": end})
    return [PointsFlowRow(*row) for row in rows]


_POINTS_POSITION = text(
    # Participants' materialised balances (one row per account, no postings read) and, per
    # horizon, their open lots due by then (ix_ledger_lots_open_by_expiry). One row per
    # horizon; no array parameter (an array type costs asyncpg an introspection a connection).
    """
    WITH balances AS (
        SELECT CAST(coalesce(sum(posted) FILTER (WHERE asset = 'POINTS'), 0) AS bigint) AS posted,
               CAST(coalesce(sum(held) FILTER (WHERE asset = 'POINTS'), 0) AS bigint) AS held,
               CAST(coalesce(sum(posted) FILTER (WHERE asset = 'DEBT'), 0) AS bigint) AS debt,
               count(*) FILTER (WHERE asset = 'POINTS' AND posted > 0) AS holders
        FROM ledger_accounts WHERE kind = 'participant'
    )
    SELECT b.posted, b.held, b.debt, b.holders,
           CAST(coalesce(sum(l.remaining), 0) AS bigint) AS due
    FROM json_array_elements_text(CAST(:horizons AS json)) WITH ORDINALITY AS h(at, n)
    CROSS JOIN balances AS b
    LEFT JOIN ledger_lots AS l
        ON l.remaining > 0 AND l.expires_at <= CAST(h.at AS timestamptz)
    GROUP BY h.n, b.posted, b.held, b.debt, b.holders
    ORDER BY h.n
    """
)


@dataclass(frozen=True, slots=True)
class PointsPositionRow:
    posted: int
    held: int
    debt: int
    holders: int
    expiring: list[int]  # open points due at or before each horizon, in the order given


async def points_position(session: AsyncSession, horizons: Sequence[datetime]) -> PointsPositionRow:
    """Participants' posted, held and owed points now, how many hold any, and the open
    points due at or before each of `horizons`. One statement."""
    if not horizons:
        raise ValueError("points_position needs at least one horizon")
    rows = (await session.execute(_POINTS_POSITION, {"horizons": json_text(list(horizons))})).all()
    first = rows[0]
    return PointsPositionRow(first[0], first[1], first[2], first[3], [row[4] for row in rows])


_SETTLEMENT_TOTALS = text(
    # Every posting to any merchant's settlement accounts (all shards) in the period, summed
    # per merchant: captures come in (+), refunds go out (-).
    """
    SELECT a.owner_id,
           count(*) FILTER (WHERE p.amount > 0) AS redemptions,
           CAST(coalesce(sum(p.amount) FILTER (WHERE p.amount > 0), 0) AS bigint) AS redeemed,
           count(*) FILTER (WHERE p.amount < 0) AS refunds,
           CAST(coalesce(-sum(p.amount) FILTER (WHERE p.amount < 0), 0) AS bigint) AS refunded
    FROM ledger_transactions AS t
    JOIN ledger_postings AS p ON p.transaction_id = t.id
    JOIN ledger_accounts AS a ON a.id = p.account_id AND a.kind = 'settlement'
    WHERE t.created_at >= :start AND t.created_at < :end
    GROUP BY a.owner_id
    ORDER BY a.owner_id
    """
)


@dataclass(frozen=True, slots=True)
class SettlementTotalRow:
    merchant_id: uuid.UUID
    redemptions: int
    redeemed: int
    refunds: int
    refunded: int


async def settlement_totals(
    session: AsyncSession, start: datetime, end: datetime
) -> list[SettlementTotalRow]:
    """Per merchant, captures and refunds posted to its settlement accounts in [start, end).
    One statement."""
    rows = await session.execute(_SETTLEMENT_TOTALS, {"start": start, "end": end})
    return [SettlementTotalRow(*row) for row in rows]
