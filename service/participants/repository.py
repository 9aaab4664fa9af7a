"""All of the participants domain's SQL: the app's reads, identity links, and a participant's
own rows for export and erasure. Functions take the session first and never commit.

The reads are all on indexes; nothing scans a participant's whole history. The balance read
(`pending_events`) is a pre-built statement run straight on asyncpg through a `Reader` (the
app's read pool), never through the ORM.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.accounts import member_participant_ids
from service.crediting.reads import credited_grams
from service.models import Participant, PartnerTokenUse

ParticipantFilter = ColumnElement[bool]
"""Which participants a leaderboard ranks (a region's, an organisation's)."""


@dataclass(frozen=True, slots=True)
class GramsRank:
    participant_id: uuid.UUID
    display_name: str
    grams: int


def region_filter(region: str) -> ParticipantFilter:
    return Participant.region == region


def organisation_filter(organisation_id: uuid.UUID) -> ParticipantFilter:
    """Participants who are members (users) of the organisation, and the organisation itself."""
    members = member_participant_ids(organisation_id)
    return or_(Participant.id.in_(members), Participant.id == organisation_id)


async def top_by_grams(
    session: AsyncSession,
    participant_filter: ParticipantFilter,
    start: datetime,
    end: datetime,
    limit: int,
) -> list[GramsRank]:
    """The filter's participants (erased ones left out) by grams credited in [start, end):
    crediting's sums, ranked here. One statement."""
    candidates = select(Participant.id).where(participant_filter, Participant.erased_at.is_(None))
    sums = credited_grams(candidates, start, end).subquery()
    rows = await session.execute(
        select(sums.c.participant_id, Participant.display_name, sums.c.grams)
        .join(Participant, Participant.id == sums.c.participant_id)
        .order_by(sums.c.grams.desc(), sums.c.participant_id)
        .limit(limit)
    )
    return [GramsRank(pid, name, int(total)) for pid, name, total in rows]


# --- identity links ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkView:
    id: int
    partner_code: str
    partner_name: str
    linked_at: datetime


async def use_partner_token(
    session: AsyncSession, partner_id: uuid.UUID, token_id: str, participant_id: uuid.UUID
) -> bool:
    """Record a partner token's use; False when it was used before."""
    used = await session.execute(
        insert(PartnerTokenUse)
        .values(partner_id=partner_id, token_id=token_id, participant_id=participant_id)
        .on_conflict_do_nothing()
        .returning(PartnerTokenUse.token_id)
    )
    return used.scalar() is not None


# --- a participant's own rows, for export and erasure (privacy) -----------------------------


@dataclass(frozen=True, slots=True)
class ParticipantRecord:
    id: uuid.UUID
    kind: str
    display_name: str
    region: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TokenUseRecord:
    partner_id: uuid.UUID
    token_id: str
    used_at: datetime


async def participant_record(
    session: AsyncSession, participant_id: uuid.UUID
) -> ParticipantRecord | None:
    row = (
        await session.execute(
            select(
                Participant.id,
                Participant.kind,
                Participant.display_name,
                Participant.region,
                Participant.created_at,
            ).where(Participant.id == participant_id)
        )
    ).first()
    return ParticipantRecord(*row) if row is not None else None


async def token_use_records(
    session: AsyncSession, participant_id: uuid.UUID
) -> list[TokenUseRecord]:
    rows = await session.execute(
        select(PartnerTokenUse.partner_id, PartnerTokenUse.token_id, PartnerTokenUse.used_at)
        .where(PartnerTokenUse.participant_id == participant_id)
        .order_by(PartnerTokenUse.used_at, PartnerTokenUse.partner_id, PartnerTokenUse.token_id)
    )
    return [TokenUseRecord(*row) for row in rows]


async def erase_participant(
    session: AsyncSession, participant_id: uuid.UUID, erased_name: str, now: datetime
) -> None:
    """Overwrite the name and region; the row stays, as the ledger's pseudonym."""
    await session.execute(
        update(Participant)
        .where(Participant.id == participant_id)
        .values(display_name=erased_name, region=None, erased_at=now)
    )


async def insert_participant(
    session: AsyncSession,
    participant_id: uuid.UUID,
    *,
    kind: str,
    display_name: str,
    region: str | None,
) -> None:
    await session.execute(
        insert(Participant).values(
            id=participant_id, kind=kind, display_name=display_name, region=region
        )
    )


@dataclass(frozen=True, slots=True)
class ParticipantLabel:
    """How a participant is shown: name and region."""

    display_name: str
    region: str | None


async def labels(
    session: AsyncSession, participant_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, ParticipantLabel]:
    if not participant_ids:
        return {}
    rows = await session.execute(
        select(Participant.id, Participant.display_name, Participant.region).where(
            Participant.id.in_(participant_ids)
        )
    )
    return {pid: ParticipantLabel(name, region) for pid, name, region in rows}


async def insert_missing_participants(
    session: AsyncSession, rows: Sequence[dict[str, object]]
) -> None:
    """Participants with fixed ids (the demo's), skipping those that exist."""
    if rows:
        await session.execute(insert(Participant).values(list(rows)).on_conflict_do_nothing())
