"""Lots and their movements: what points are left, where they came from, when they expire."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import driver
from service.ledger.repository.postings import OpenLot, _accounts, _lots, _movements, _postings


async def participant_side_totals(session: AsyncSession, transaction_id: int) -> dict[str, int]:
    """Per asset, what a transaction moved on participants' accounts (for replaying results)."""
    rows = await session.execute(
        select(_postings.c.asset, func.sum(_postings.c.amount))
        .join(_accounts, _accounts.c.id == _postings.c.account_id)
        .where(_postings.c.transaction_id == transaction_id)
        .where(_accounts.c.kind == "participant")
        .group_by(_postings.c.asset)
    )
    return {asset: int(total) for asset, total in rows}


async def lots_of_transactions(
    session: AsyncSession, ids: Sequence[int]
) -> dict[int, tuple[int, int]]:
    """transaction id -> (lot id, lot amount) for credits that opened a lot."""
    if not ids:
        return {}
    rows = await session.execute(
        select(_lots.c.transaction_id, _lots.c.id, _lots.c.amount).where(
            _lots.c.transaction_id.in_(list(ids))
        )
    )
    return {tx: (lot_id, amount) for tx, lot_id, amount in rows}


async def expired_from_lot(session: AsyncSession, lot_id: int) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(_movements.c.amount), 0)).where(
            _movements.c.lot_id == lot_id, _movements.c.kind == "expire"
        )
    )
    return -int(total or 0)


async def insert_movements(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        connection = await session.connection()
        await connection.execute(_movements.insert(), list(rows))


async def set_lot_remainders(session: AsyncSession, remainders: dict[int, int]) -> None:
    if not remainders:
        return
    connection = await session.connection()
    await connection.execute(
        update(_lots)
        .where(_lots.c.id == bindparam("_id"))
        .values(remaining=bindparam("remaining")),
        [{"_id": lot_id, "remaining": value} for lot_id, value in sorted(remainders.items())],
    )


_OPEN_LOTS = text(
    """
    SELECT id, remaining, expires_at FROM ledger_lots
    WHERE account_id = :account_id AND remaining > 0
      AND (CAST(:after AS timestamptz) IS NULL OR expires_at > CAST(:after AS timestamptz))
    ORDER BY expires_at, id
    """
)


async def open_lots(
    session: AsyncSession, account_id: int, *, not_expired_at: datetime | None
) -> list[OpenLot]:
    """The account's lots with points left, soonest-expiring first (caller holds the lock)."""
    rows = await session.execute(_OPEN_LOTS, {"account_id": account_id, "after": not_expired_at})
    return [OpenLot(row.id, row.remaining, row.expires_at) for row in rows]


async def lot_of_transaction(session: AsyncSession, transaction_id: int) -> OpenLot | None:
    row = (
        await session.execute(
            select(_lots.c.id, _lots.c.remaining, _lots.c.expires_at).where(
                _lots.c.transaction_id == transaction_id
            )
        )
    ).first()
    return OpenLot(row.id, row.remaining, row.expires_at) if row else None


_OPEN_LOTS_SQL = """
    SELECT id, remaining, expires_at FROM ledger_lots
    WHERE account_id = $1 AND remaining > 0 AND expires_at > $2
    ORDER BY expires_at, id
"""


async def open_lots_at(session: AsyncSession, account_id: int, now: datetime) -> list[OpenLot]:
    """`open_lots(..., not_expired_at=now)` on the driver (the hold path)."""
    connection = await driver(session)
    rows = await connection.fetch(_OPEN_LOTS_SQL, account_id, now)
    return [OpenLot(row[0], row[1], row[2]) for row in rows]


class DueLot(NamedTuple):
    id: int
    account_id: int
    last_movement: int  # the id of the lot's latest movement


async def due_lots(session: AsyncSession, now: datetime, limit: int) -> list[DueLot]:
    """Lots past expiry with points left, with the id of their latest movement."""
    last_movement = (
        select(func.max(_movements.c.id)).where(_movements.c.lot_id == _lots.c.id).scalar_subquery()
    )
    rows = await session.execute(
        select(_lots.c.id, _lots.c.account_id, last_movement.label("last_movement"))
        .where(_lots.c.remaining > 0, _lots.c.expires_at <= now)
        .order_by(_lots.c.account_id, _lots.c.id)
        .limit(limit)
    )
    return [DueLot(*row) for row in rows]


async def lots_by_id(session: AsyncSession, ids: Iterable[int]) -> dict[int, OpenLot]:
    rows = await session.execute(
        select(_lots.c.id, _lots.c.remaining, _lots.c.expires_at).where(
            _lots.c.id.in_(sorted(set(ids)))
        )
    )
    return {row.id: OpenLot(row.id, row.remaining, row.expires_at) for row in rows}
