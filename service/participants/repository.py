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
    LedgerAccount,
    LedgerPosting,
    LedgerTransaction,
    Participant,
    PartnerEvent,
)


async def points_account_id(session: AsyncSession, participant_id: uuid.UUID) -> int | None:
    account_id: int | None = await session.scalar(
        select(LedgerAccount.id).where(LedgerAccount.code == f"participant:{participant_id}:POINTS")
    )
    return account_id


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


async def history(
    session: AsyncSession,
    account_id: int,
    *,
    before_seq: int | None,
    limit: int,
    kinds: list[str] | None,
    since: datetime | None,
    until: datetime | None,
) -> list[Any]:
    query = (
        select(
            LedgerPosting.account_seq,
            LedgerPosting.amount,
            LedgerTransaction.kind,
            LedgerTransaction.request,
            LedgerTransaction.created_at,
        )
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(LedgerPosting.account_id == account_id)
        .order_by(LedgerPosting.account_seq.desc())
        .limit(limit)
    )
    if before_seq is not None:
        query = query.where(LedgerPosting.account_seq < before_seq)
    if kinds:
        query = query.where(LedgerTransaction.kind.in_(kinds))
    if since is not None:
        query = query.where(LedgerTransaction.created_at >= since)
    if until is not None:
        query = query.where(LedgerTransaction.created_at < until)
    return list(await session.execute(query))


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
