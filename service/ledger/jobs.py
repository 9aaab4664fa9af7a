"""Background ledger jobs: expiry of lots and timeouts of forgotten holds.

Each batch is its own database transaction, so a crash loses at most the batch
in flight, and the next run picks up exactly where the last commit ended.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.ledger import service


async def run_expiry(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime | None = None,
    batch_size: int = 500,
) -> int:
    """Expire every due lot, one committed batch at a time; returns the lots expired."""
    moment = now or datetime.now(UTC)
    total = 0
    while True:
        async with sessionmaker() as session, session.begin():
            expired = await service.expire_lots(session, now=moment, batch_size=batch_size)
        total += expired
        if expired == 0:
            return total


async def run_hold_timeouts(
    sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime | None = None
) -> int:
    """Void every hold past its timeout; one hold per transaction keeps the lock order simple."""
    moment = now or datetime.now(UTC)
    total = 0
    while True:
        async with sessionmaker() as session, session.begin():
            voided = await service.void_overdue_holds(session, now=moment, batch_size=1)
        total += voided
        if voided == 0:
            return total
