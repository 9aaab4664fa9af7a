"""All of the participants domain's SQL: the app's reads, identity links, and a participant's
own rows for export and erasure. Functions take the session first and never commit.

The reads are all on indexes; nothing scans a participant's whole history. The balance read
(`pending_events`) is a pre-built statement run straight on asyncpg through a `Reader` (the
app's read pool), never through the ORM.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import (
    Credit,
    IdentityLink,
    OrganisationMember,
    Participant,
    Partner,
    PartnerEvent,
    PartnerTokenUse,
    User,
)

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
    members = (
        select(User.participant_id)
        .join(OrganisationMember, OrganisationMember.user_id == User.id)
        .where(OrganisationMember.organisation_id == organisation_id)
    )
    return or_(Participant.id.in_(members), Participant.id == organisation_id)


async def top_by_grams(
    session: AsyncSession,
    participant_filter: ParticipantFilter,
    start: datetime,
    end: datetime,
    limit: int,
) -> list[GramsRank]:
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


async def active_links(
    session: AsyncSession,
    participant_id: uuid.UUID,
    *,
    offset: int = 0,
    limit: int | None = None,
) -> list[LinkView]:
    rows = await session.execute(
        select(IdentityLink.id, Partner.code, Partner.name, IdentityLink.linked_at)
        .join(Partner, Partner.id == IdentityLink.partner_id)
        .where(IdentityLink.participant_id == participant_id, IdentityLink.unlinked_at.is_(None))
        .order_by(IdentityLink.linked_at, IdentityLink.id)
        .offset(offset)
        .limit(limit)
    )
    return [LinkView(*row) for row in rows]


async def end_link(
    session: AsyncSession, participant_id: uuid.UUID, link_id: int, now: datetime
) -> bool:
    """Mark the participant's active link unlinked; False when there is no such link."""
    result = await session.execute(
        update(IdentityLink)
        .where(
            IdentityLink.id == link_id,
            IdentityLink.participant_id == participant_id,
            IdentityLink.unlinked_at.is_(None),
        )
        .values(unlinked_at=now)
        .returning(IdentityLink.id)
    )
    return result.scalar() is not None


# --- a participant's own rows, for export and erasure (privacy) -----------------------------


@dataclass(frozen=True, slots=True)
class ParticipantRecord:
    id: uuid.UUID
    kind: str
    display_name: str
    region: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IdentityLinkRecord:
    """A link, active or ended: the keyed hash of the identity, never the number itself."""

    id: int
    subject_hash: bytes
    linked_at: datetime
    unlinked_at: datetime | None
    partner: str  # the partner's code


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


async def link_records(
    session: AsyncSession, participant_id: uuid.UUID
) -> list[IdentityLinkRecord]:
    rows = await session.execute(
        select(
            IdentityLink.id,
            IdentityLink.subject_hash,
            IdentityLink.linked_at,
            IdentityLink.unlinked_at,
            Partner.code,
        )
        .join(Partner, Partner.id == IdentityLink.partner_id)
        .where(IdentityLink.participant_id == participant_id)
        .order_by(IdentityLink.id)
    )
    return [IdentityLinkRecord(*row) for row in rows]


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


async def delete_links(session: AsyncSession, participant_id: uuid.UUID) -> None:
    await session.execute(delete(IdentityLink).where(IdentityLink.participant_id == participant_id))


async def insert_missing_participants(
    session: AsyncSession, rows: Sequence[dict[str, object]]
) -> None:
    """Participants with fixed ids (the demo's), skipping those that exist."""
    if rows:
        await session.execute(insert(Participant).values(list(rows)).on_conflict_do_nothing())
