"""What the redemption domain holds about a participant (export), and what erasure removes.

Redemptions are facts the merchants' settlement and the ledger's holds rest on: they stay,
under the participant id as a pseudonym. Redemption codes (single-use tokens shown at a till)
are the person's, and go.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import Redemption, RedemptionToken
from service.privacy import PrivacyTables

PRIVACY_TABLES: Final = PrivacyTables(
    exported={"redemptions": "redemptions", "redemption_tokens": "redemption_codes"},
    erased=frozenset({"redemption_tokens"}),
)


@dataclass(frozen=True, slots=True)
class RedemptionRecord:
    id: uuid.UUID
    merchant_id: uuid.UUID
    offer_id: uuid.UUID | None
    points: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RedemptionCodeRecord:
    """A code shown at a till; never the code itself (only its hash is kept)."""

    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True, slots=True)
class RedemptionExport:
    redemptions: list[RedemptionRecord]
    redemption_codes: list[RedemptionCodeRecord]


async def export_participant(session: AsyncSession, participant_id: uuid.UUID) -> RedemptionExport:
    """The participant's redemptions and redemption codes. Two statements."""
    redemptions = [
        RedemptionRecord(*row)
        for row in await session.execute(
            select(
                Redemption.id,
                Redemption.merchant_id,
                Redemption.offer_id,
                Redemption.points,
                Redemption.created_at,
            )
            .where(Redemption.participant_id == participant_id)
            .order_by(Redemption.created_at, Redemption.id)
        )
    ]
    codes = [
        RedemptionCodeRecord(*row)
        for row in await session.execute(
            select(RedemptionToken.created_at, RedemptionToken.expires_at, RedemptionToken.used_at)
            .where(RedemptionToken.participant_id == participant_id)
            .order_by(RedemptionToken.created_at, RedemptionToken.token_hash)
        )
    ]
    return RedemptionExport(redemptions=redemptions, redemption_codes=codes)


async def erase_participant(session: AsyncSession, participant_id: uuid.UUID) -> None:
    """Delete the participant's redemption codes; the redemptions stay (see the module)."""
    await session.execute(
        delete(RedemptionToken).where(RedemptionToken.participant_id == participant_id)
    )
