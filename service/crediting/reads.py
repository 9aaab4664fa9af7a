"""What the app shows of a participant's events and credits: the crediting domain's reads
for other domains (the participants' balance, reductions and credit explanations)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from service.crediting import repository
from service.crediting.repository import ReductionTotals
from service.db import Reader
from service.models import Credit

__all__ = ["ReductionTotals", "credit_for", "credited_grams", "pending_events", "reductions"]


async def pending_events(source: AsyncSession | Reader, participant_id: uuid.UUID) -> int:
    """Events of the participant's linked identities still waiting (every balance read:
    one statement, on the read pool when `source` is one)."""
    return await repository.pending_events(source, participant_id)


async def reductions(
    session: AsyncSession,
    participant_id: uuid.UUID,
    tz: str,
    *,
    offset: int = 0,
    limit: int | None = None,
) -> list[ReductionTotals]:
    """The participant's credited grams and points by month and action type."""
    return await repository.participant_reductions(
        session, participant_id, tz, offset=offset, limit=limit
    )


async def credit_for(
    session: AsyncSession, participant_id: uuid.UUID, credit_id: int
) -> tuple[Credit, str] | None:
    """The participant's credit and its event's status, or None (unknown, or someone else's)."""
    return await repository.credit_for(session, participant_id, credit_id)


def credited_grams(
    participant_ids: Select[uuid.UUID], start: datetime, end: datetime
) -> Select[uuid.UUID, int]:
    """Grams credited to each of `participant_ids` in [start, end), retracted events left out:
    a statement for the leaderboard to rank (it never runs on its own)."""
    return repository.credited_grams(participant_ids, start, end)
