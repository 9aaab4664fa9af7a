"""Reads: balances, a hold's state, history pages and settlement lines."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service.db import Reader, reader
from service.i18n import _
from service.ledger import repository as repo
from service.ledger.errors import (
    HoldNotFoundError,
)
from service.ledger.repository.reads import HistoryRow
from service.ledger.schemas import (
    Balance,
    HoldState,
    SettlementLine,
)


async def balance(source: AsyncSession | Reader, participant_id: uuid.UUID) -> Balance:
    """Available, held, debt and grams, with what expires when. One statement."""
    accounts: dict[str, tuple[int, int]] = {}
    expiring: list[tuple[datetime, int]] = []
    for asset, posted, held, expires_at in await repo.balance_rows(reader(source), participant_id):
        if asset == "LOT":
            assert expires_at is not None  # every lot expires (ledger_lots.expires_at NOT NULL)
            expiring.append((expires_at, posted))
        else:
            accounts[asset] = (posted, held)
    posted, held = accounts.get("POINTS", (0, 0))
    return Balance(
        participant_id=participant_id,
        posted=posted,
        held=held,
        available=posted - held,
        debt=accounts.get("DEBT", (0, 0))[0],
        grams=accounts.get("GCO2E", (0, 0))[0],
        expiring=expiring,
    )


async def hold_state(session: AsyncSession, hold_id: int) -> HoldState:
    """Where a hold stands: pending, or resolved (posted, voided, expired), with what was
    captured and refunded since. One statement."""
    row = await repo.hold_state(session, hold_id)
    if row is None:
        raise HoldNotFoundError(_("no hold %(hold_id)s", hold_id=hold_id))
    return HoldState(
        hold_id=hold_id,
        expires_at=row.expires_at,
        outcome=row.outcome,
        amount_posted=row.amount_posted or 0,
        refunded=int(row.refunded or 0),
        transaction_id=row.transaction_id,
    )


async def history(
    source: AsyncSession | Reader,
    participant_id: uuid.UUID,
    *,
    before_seq: int | None,
    limit: int,
    kinds: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[HistoryRow]:
    """A page of the participant's points postings, newest first: rows of (account_seq,
    amount, kind, request, created_at, reverses_credit_id: the credit a reversal takes back).
    One statement."""
    return await repo.history_rows(
        reader(source),
        participant_id,
        before_seq=before_seq,
        limit=limit,
        kinds=kinds,
        since=since,
        until=until,
    )


async def settlement_lines(
    session: AsyncSession, merchant_id: uuid.UUID, *, start: datetime, end: datetime
) -> list[SettlementLine]:
    """Every capture (+) and refund (-) posted to a merchant's settlement accounts in
    [start, end), oldest first. One statement."""
    return [
        SettlementLine(at, kind, tx, amount)
        for at, kind, tx, amount in await repo.settlement_lines(session, merchant_id, start, end)
    ]
