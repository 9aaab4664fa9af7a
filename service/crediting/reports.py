"""The programme reports' crediting figures: reductions from the credits, and partners'
traffic from their events. Each one set-based statement over a bounded period."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service.crediting import repository as repo
from service.crediting.repository import PartnerTrafficRow, ReductionRow

# Outcomes that refuse an event for good (a bad request never becomes an event at all).
REJECTED_STATUSES = frozenset({"ineligible", "implausible", "expired", "duplicate"})

__all__ = [
    "REJECTED_STATUSES",
    "PartnerTrafficRow",
    "ReductionRow",
    "partner_traffic",
    "reductions",
]


async def reductions(
    session: AsyncSession, *, start: datetime, end: datetime, timezone: str
) -> list[ReductionRow]:
    """Grams, points and credits of the actions that occurred in [start, end), by local month,
    region, action type and partner; retracted events' credits apart. One statement."""
    return await repo.reductions(session, start, end, timezone)


async def partner_traffic(
    session: AsyncSession, *, start: datetime, end: datetime, timezone: str
) -> list[PartnerTrafficRow]:
    """Events received in [start, end), by partner, local hour and outcome. One statement."""
    return await repo.partner_traffic(session, start, end, timezone)
