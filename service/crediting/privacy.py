"""What crediting holds about a participant (export), and why erasure keeps it.

Events, credits and cap usage are what the ledger's credits rest on (invariant 5: a credit
never changes, and recomputing it gives the same numbers). They stay, under the participant
id as a pseudonym; the partner identity behind an event is only ever a keyed hash, and the
link from that hash to the person is erased with the identity links (participants domain).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from service.crediting import repository as repo
from service.crediting.repository import CapUsageRecord, CreditRecord, EventRecord
from service.privacy import PrivacyTables

# Nothing is erased: crediting's facts are kept under the pseudonym.
PRIVACY_TABLES: Final = PrivacyTables(
    exported={"partner_events": "events", "credits": "credits", "cap_usage": "cap_usage"}
)


@dataclass(frozen=True, slots=True)
class CreditingExport:
    events: list[EventRecord]
    credits: list[CreditRecord]
    cap_usage: list[CapUsageRecord]


async def export_participant(session: AsyncSession, participant_id: uuid.UUID) -> CreditingExport:
    """The participant's events, credits and cap usage. Three statements."""
    return CreditingExport(
        events=await repo.participant_events(session, participant_id),
        credits=await repo.participant_credits(session, participant_id),
        cap_usage=await repo.participant_cap_usage(session, participant_id),
    )


async def erase_participant(session: AsyncSession, participant_id: uuid.UUID) -> None:
    """Nothing to erase: see the module."""
