"""What crediting holds about a participant (export), and what erasure removes.

Events, credits and cap usage are what the ledger's credits rest on (invariant 5: a credit
never changes, and recomputing it gives the same numbers). They stay, under the participant
id as a pseudonym; the partner identity behind an event is only ever a keyed hash, and the
link from that hash to the person, the identity links, is deleted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from service.crediting import repository as repo
from service.crediting.repository import CapUsageRecord, CreditRecord, EventRecord
from service.partners.service import partner_labels
from service.privacy import PrivacyTables

# Nothing is erased: crediting's facts are kept under the pseudonym.
PRIVACY_TABLES: Final = PrivacyTables(
    exported={
        "identity_links": "identity_links",
        "partner_events": "events",
        "credits": "credits",
        "cap_usage": "cap_usage",
    },
    erased=frozenset({"identity_links"}),
)


@dataclass(frozen=True, slots=True)
class IdentityLinkRecord:
    """A link, active or ended: the keyed hash of the identity, never the number itself."""

    id: int
    subject_hash: bytes
    linked_at: datetime
    unlinked_at: datetime | None
    partner: str  # the partner's code


@dataclass(frozen=True, slots=True)
class CreditingExport:
    identity_links: list[IdentityLinkRecord]
    events: list[EventRecord]
    credits: list[CreditRecord]
    cap_usage: list[CapUsageRecord]


async def export_participant(session: AsyncSession, participant_id: uuid.UUID) -> CreditingExport:
    """The participant's identity links (ended ones too), events, credits and cap usage."""
    links = await repo.link_records(session, participant_id)
    partners = await partner_labels(session, {link.partner_id for link in links})
    return CreditingExport(
        identity_links=[
            IdentityLinkRecord(
                link.id,
                link.subject_hash,
                link.linked_at,
                link.unlinked_at,
                partners[link.partner_id].code,
            )
            for link in links
        ],
        events=await repo.participant_events(session, participant_id),
        credits=await repo.participant_credits(session, participant_id),
        cap_usage=await repo.participant_cap_usage(session, participant_id),
    )


async def erase_participant(session: AsyncSession, participant_id: uuid.UUID) -> None:
    """Delete every identity link: nothing connects the participant id to a partner's
    identity any more. Events, credits and cap usage stay (see the module)."""
    await repo.delete_links(session, participant_id)
