"""The app's read queries. All on indexes; nothing scans a participant's whole history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import (
    Credit,
    IdentityLink,
    Participant,
    PartnerEvent,
)


async def pending_events(session: AsyncSession, participant_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(PartnerEvent)
        .join(
            IdentityLink,
            and_(
                IdentityLink.partner_id == PartnerEvent.partner_id,
                IdentityLink.subject_hash == PartnerEvent.subject_hash,
                IdentityLink.unlinked_at.is_(None),
            ),
        )
        .where(IdentityLink.participant_id == participant_id, PartnerEvent.status == "pending")
    )
    return int(count or 0)


async def reductions(session: AsyncSession, participant_id: uuid.UUID, tz: str) -> list[Any]:
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
