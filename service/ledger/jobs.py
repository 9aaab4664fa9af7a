"""Background ledger jobs: expiry of lots and timeouts of forgotten holds.

Each batch is its own database transaction, so a crash loses at most the batch
in flight, and the next run picks up exactly where the last commit ended.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.ledger import service

Progress = Callable[[int, int | None], None]
"""A job's progress report: (done so far, total when known)."""

HoldsExpired = Callable[[AsyncSession, list[int]], Awaitable[None]]
"""Called with the ids of the holds just expired, in the transaction that expired them."""


async def run_expiry(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime | None = None,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> int:
    """Expire every due lot, one committed batch at a time; returns the lots expired."""
    moment = now or datetime.now(UTC)
    total = 0
    while True:
        async with sessionmaker() as session, session.begin():
            expired = await service.expire_lots(session, now=moment, batch_size=batch_size)
        total += expired
        if progress is not None:
            progress(total, None)
        if expired == 0:
            return total


async def run_hold_timeouts(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime | None = None,
    on_expired: HoldsExpired | None = None,
    progress: Progress | None = None,
) -> int:
    """Void every hold past its timeout; one hold per transaction keeps the lock order simple.

    `on_expired` runs in each transaction with the holds it expired: the redemption domain
    announces `redemption.expired` there (`service.redemption.jobs`), so the ledger never
    needs to know who placed a hold, and a webhook is queued if and only if the hold expired.
    """
    moment = now or datetime.now(UTC)
    total = 0
    while True:
        async with sessionmaker() as session, session.begin():
            voided = await service.void_overdue_holds(session, now=moment, batch_size=1)
            if voided and on_expired is not None:
                await on_expired(session, voided)
        total += len(voided)
        if progress is not None:
            progress(total, None)
        if not voided:
            return total
