"""What the redemption domain holds about a participant (export), and what erasure removes.

Redemptions are facts the merchants' settlement and the ledger's holds rest on: they stay,
under the participant id as a pseudonym. Redemption codes (single-use tokens shown at a till)
are the person's, and go.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from service.privacy import PrivacyTables
from service.redemption.repository import (
    RedemptionCodeRecord,
    RedemptionRecord,
    RedemptionRepository,
)

PRIVACY_TABLES: Final = PrivacyTables(
    exported={"redemptions": "redemptions", "redemption_tokens": "redemption_codes"},
    erased=frozenset({"redemption_tokens"}),
)


@dataclass(frozen=True, slots=True)
class RedemptionExport:
    redemptions: list[RedemptionRecord]
    redemption_codes: list[RedemptionCodeRecord]


async def export_participant(session: AsyncSession, participant_id: uuid.UUID) -> RedemptionExport:
    """The participant's redemptions and redemption codes. Two statements."""
    repository = RedemptionRepository.from_session(session)
    redemptions = await repository.redemptions_of(participant_id)
    codes = await repository.codes_of(participant_id)
    return RedemptionExport(redemptions=redemptions, redemption_codes=codes)


async def erase_participant(session: AsyncSession, participant_id: uuid.UUID) -> None:
    """Delete the participant's redemption codes; the redemptions stay (see the module)."""
    await RedemptionRepository.from_session(session).delete_codes_of(participant_id)
