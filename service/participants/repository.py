"""The app's read queries. All on indexes; nothing scans a participant's whole history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import Reader, reader
from service.models import (
    Credit,
    Participant,
    PartnerEvent,
)

_PENDING_EVENTS = """
    SELECT count(*) FROM partner_events AS e
    JOIN identity_links AS l
      ON l.partner_id = e.partner_id AND l.subject_hash = e.subject_hash
     AND l.unlinked_at IS NULL
    WHERE l.participant_id = $1 AND e.status = 'pending'
"""


async def pending_events(source: AsyncSession | Reader, participant_id: uuid.UUID) -> int:
    """Events of the participant's linked identities still waiting (every balance read)."""
    rows = await reader(source).rows(_PENDING_EVENTS, participant_id)
    return int(rows[0][0])


async def reductions(
    session: AsyncSession,
    participant_id: uuid.UUID,
    tz: str,
    *,
    offset: int = 0,
    limit: int | None = None,
) -> list[Any]:
    month = func.to_char(func.timezone(tz, Credit.occurred_at), "YYYY-MM")
    rows = await session.execute(
        select(
            month.label("month"),
            Credit.action_type,
            func.sum(Credit.grams),
            func.sum(Credit.points),
            func.count(),
        )
        .join(PartnerEvent, PartnerEvent.id == Credit.event_id)
        .where(Credit.participant_id == participant_id, PartnerEvent.status != "retracted")
        .group_by(month, Credit.action_type)
        .order_by(month.desc(), Credit.action_type)
        .offset(offset)
        .limit(limit)
    )
    return list(rows)


async def credit_for(session: AsyncSession, participant_id: uuid.UUID, credit_id: int) -> Any:
    return (
        await session.execute(
            select(Credit, PartnerEvent.status)
            .join(PartnerEvent, PartnerEvent.id == Credit.event_id)
            .where(Credit.event_id == credit_id, Credit.participant_id == participant_id)
        )
    ).first()


async def top_by_grams(
    session: AsyncSession, participant_filter: Any, start: datetime, end: datetime, limit: int
) -> list[Any]:
    grams = func.sum(Credit.grams)
    rows = await session.execute(
        select(Credit.participant_id, Participant.display_name, grams.label("grams"))
        .join(Participant, Participant.id == Credit.participant_id)
        .join(PartnerEvent, PartnerEvent.id == Credit.event_id)
        .where(
            participant_filter,
            Credit.occurred_at >= start,
            Credit.occurred_at < end,
            PartnerEvent.status != "retracted",
            Participant.erased_at.is_(None),
        )
        .group_by(Credit.participant_id, Participant.display_name)
        .order_by(grams.desc(), Credit.participant_id)
        .limit(limit)
    )
    return list(rows)
