"""Reads: balances, history pages, a hold's state, settlement lines and a participant's rows."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import Reader
from service.ledger.plan import (
    merchant_account_codes,
    participant_account_code,
)
from service.ledger.repository.postings import _accounts, _holds, _lots, _postings, _transactions


class BalanceRow(NamedTuple):
    """An account of the participant (asset POINTS, GCO2E or DEBT), or the points of its open
    lots that expire at one time (asset 'LOT', `posted` holding them)."""

    asset: str
    posted: int
    held: int
    expires_at: datetime | None


class HistoryRow(NamedTuple):
    """A posting to the participant's POINTS account, with its transaction."""

    account_seq: int
    amount: int
    kind: str
    request: dict[str, Any]  # the transaction's request document (JSON)
    created_at: datetime
    reverses_credit_id: str | None  # on a reversal, the reversed credit's id


@dataclass(frozen=True, slots=True)
class AccountRecord:
    id: int
    asset: str
    posted: int
    held: int


@dataclass(frozen=True, slots=True)
class PostingRecord:
    id: int
    account_id: int
    asset: str
    amount: int
    transaction_id: int
    kind: str
    request: dict[str, Any]  # the transaction's request document (JSON)


@dataclass(frozen=True, slots=True)
class LotRecord:
    id: int
    amount: int
    remaining: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class HoldRecord:
    id: int
    amount: int
    expires_at: datetime
    created_at: datetime


# The app's hot reads: plain SQL with asyncpg's placeholders, run through a `Reader` (the
# read pool's connection, or a session).
_BALANCE = """
    SELECT a.asset, a.posted, a.held, CAST(NULL AS timestamptz) AS expires_at
    FROM ledger_accounts AS a
    WHERE a.code IN ($1, $2, $3)
    UNION ALL
    SELECT 'LOT', CAST(sum(l.remaining) AS bigint), 0, l.expires_at
    FROM ledger_accounts AS a
    JOIN ledger_lots AS l ON l.account_id = a.id AND l.remaining > 0
    WHERE a.code = $1
    GROUP BY l.expires_at
    ORDER BY expires_at NULLS FIRST
"""


async def balance_rows(source: Reader, participant_id: uuid.UUID) -> list[BalanceRow]:
    """Rows of (asset, posted, held, expires_at), one round trip: one per account of the
    participant that exists, then one per expiry date of its open points lots (asset 'LOT',
    posted holding the points that expire then), soonest first. The lots are found by
    ix_ledger_lots_open_by_account."""
    rows = await source.rows(
        _BALANCE,
        participant_account_code(participant_id, "POINTS"),
        participant_account_code(participant_id, "GCO2E"),
        participant_account_code(participant_id, "DEBT"),
    )
    return [BalanceRow(*row) for row in rows]


# A reversal names the credit transaction it takes back (request.reverses); the join reads
# that credit's own credit_id, so the app can point at the item reversed (same statement).
_HISTORY = """
    SELECT p.account_seq, p.amount, t.kind, t.request, t.created_at,
           reversed.request ->> 'credit_id' AS reverses_credit_id
    FROM ledger_accounts AS a
    JOIN ledger_postings AS p ON p.account_id = a.id
    JOIN ledger_transactions AS t ON t.id = p.transaction_id
    LEFT JOIN ledger_transactions AS reversed
      ON t.kind = 'reversal' AND reversed.id = CAST(t.request ->> 'reverses' AS bigint)
    WHERE a.code = $1
      AND ($2::bigint IS NULL OR p.account_seq < $2::bigint)
      AND ($3::text[] IS NULL OR t.kind = ANY($3::text[]))
      AND ($4::timestamptz IS NULL OR t.created_at >= $4::timestamptz)
      AND ($5::timestamptz IS NULL OR t.created_at < $5::timestamptz)
    ORDER BY p.account_seq DESC
    LIMIT $6
"""


async def history_rows(
    source: Reader,
    participant_id: uuid.UUID,
    *,
    before_seq: int | None,
    limit: int,
    kinds: Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
) -> list[HistoryRow]:
    """A page of the participant's POINTS postings, newest first: (account_seq, amount, kind,
    request, created_at, reverses_credit_id). One statement, the account found by its code;
    `reverses_credit_id` is the reversed credit's id on a reversal, else None."""
    rows = await source.rows(
        _HISTORY,
        participant_account_code(participant_id, "POINTS"),
        before_seq,
        list(kinds) if kinds else None,
        since,
        until,
        limit,
    )
    return [HistoryRow(*row) for row in rows]


_HOLD_STATE = text(
    """
    SELECT h.expires_at, r.outcome, r.amount_posted, r.transaction_id,
           (SELECT CAST(coalesce(sum(CAST(t.request ->> 'amount' AS bigint)), 0) AS bigint)
            FROM ledger_transactions AS t
            WHERE t.kind = 'refund' AND t.request ->> 'refund_of' = CAST(r.transaction_id AS text)
           ) AS refunded
    FROM ledger_holds AS h
    LEFT JOIN ledger_hold_resolutions AS r ON r.hold_id = h.id
    WHERE h.id = :hold_id
    """
)


@dataclass(frozen=True, slots=True)
class HoldStateRow:
    expires_at: datetime
    outcome: str | None
    amount_posted: int | None
    transaction_id: int | None
    refunded: int


async def hold_state(session: AsyncSession, hold_id: int) -> HoldStateRow | None:
    """(expires_at, outcome, amount_posted, transaction_id, refunded) of a hold, or None:
    one statement.
    outcome and amount_posted are None while it is unresolved; refunded sums the refunds
    of its capture."""
    row = (await session.execute(_HOLD_STATE, {"hold_id": hold_id})).first()
    return None if row is None else HoldStateRow(*row)


_SETTLEMENT_LINES = text(
    """
    SELECT t.created_at, t.kind, t.id, p.amount
    FROM ledger_postings AS p
    JOIN ledger_accounts AS a ON a.id = p.account_id
    JOIN ledger_transactions AS t ON t.id = p.transaction_id
    WHERE a.code = ANY(:codes) AND t.created_at >= :start AND t.created_at < :end
    ORDER BY t.created_at, t.id
    """
)


async def settlement_lines(
    session: AsyncSession, merchant_id: uuid.UUID, start: datetime, end: datetime
) -> list[tuple[datetime, str, int, int]]:
    """(at, kind, transaction id, points) of every posting to the merchant's settlement
    accounts in [start, end), in order."""
    rows = await session.execute(
        _SETTLEMENT_LINES,
        {"codes": merchant_account_codes(merchant_id), "start": start, "end": end},
    )
    return [(at, kind, tx, amount) for at, kind, tx, amount in rows]


async def participant_accounts(
    session: AsyncSession, participant_id: uuid.UUID
) -> list[AccountRecord]:
    """(id, asset, posted, held) of every account the participant owns."""
    rows = await session.execute(
        select(_accounts.c.id, _accounts.c.asset, _accounts.c.posted, _accounts.c.held)
        .where(_accounts.c.owner_id == participant_id)
        .order_by(_accounts.c.id)
    )
    return [AccountRecord(*row) for row in rows]


async def postings_of_accounts(
    session: AsyncSession, account_ids: Sequence[int]
) -> list[PostingRecord]:
    """(id, account, asset, amount, transaction, kind, request) of the accounts' postings."""
    rows = await session.execute(
        select(
            _postings.c.id,
            _postings.c.account_id,
            _postings.c.asset,
            _postings.c.amount,
            _postings.c.transaction_id,
            _transactions.c.kind,
            _transactions.c.request,
        )
        .join(_transactions, _transactions.c.id == _postings.c.transaction_id)
        .where(_postings.c.account_id.in_(account_ids))
        .order_by(_postings.c.id)
    )
    return [PostingRecord(*row) for row in rows]


async def lots_of_accounts(session: AsyncSession, account_ids: Sequence[int]) -> list[LotRecord]:
    """(id, amount, remaining, expires_at) of the accounts' lots."""
    rows = await session.execute(
        select(_lots.c.id, _lots.c.amount, _lots.c.remaining, _lots.c.expires_at)
        .where(_lots.c.account_id.in_(account_ids))
        .order_by(_lots.c.id)
    )
    return [LotRecord(*row) for row in rows]


async def holds_of_accounts(session: AsyncSession, account_ids: Sequence[int]) -> list[HoldRecord]:
    """(id, amount, expires_at, created_at) of the accounts' holds."""
    rows = await session.execute(
        select(_holds.c.id, _holds.c.amount, _holds.c.expires_at, _holds.c.created_at)
        .where(_holds.c.account_id.in_(account_ids))
        .order_by(_holds.c.id)
    )
    return [HoldRecord(*row) for row in rows]
