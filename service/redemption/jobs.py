"""The redemption domain's job: holds past their timeout, and the merchants told.

The ledger expires the holds (`service.ledger.jobs.run_hold_timeouts`, outcome `expired`) and
hands back, in the same transaction, the ids of those it expired; this domain, which placed
them, announces `redemption.expired` for their redemptions. The ledger never imports
redemption; a webhook is queued if and only if the expiry commits.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.ledger.jobs import Progress, run_hold_timeouts
from service.redemption.service import announce_expired


async def _announce(session: AsyncSession, hold_ids: list[int]) -> None:
    await announce_expired(session, hold_ids)


async def expire_overdue_holds(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> int:
    """Void every hold past its timeout and tell the merchants; returns the holds expired."""
    return await run_hold_timeouts(
        sessionmaker, now=now or datetime.now(UTC), on_expired=_announce, progress=progress
    )
