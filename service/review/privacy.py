"""What the review queue holds about a participant (export), and what erasure removes.

A flag is a fact behind a held or reversed credit, and the audit trail names it: it stays,
under the participant id as a pseudonym. The reviewer's free-text note may name the person,
so erasure clears it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from service.privacy import PrivacyTables
from service.review.repository import ReviewRepository

PRIVACY_TABLES: Final = PrivacyTables(exported={"review_flags": "reviews"})


@dataclass(frozen=True, slots=True)
class ReviewRecord:
    credit_id: int
    action_type: str
    occurred_at: datetime
    flagged_at: datetime
    rules: list[str]
    details: list[dict[str, Any]]
    points: int
    status: str
    decided_at: datetime | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class ReviewExport:
    reviews: list[ReviewRecord]


async def export_participant(session: AsyncSession, participant_id: uuid.UUID) -> ReviewExport:
    """The participant's flagged credits and their decisions (not reviewers' notes). One
    statement."""
    rows = await ReviewRepository.from_session(session).of_participant(participant_id)
    return ReviewExport(
        [
            ReviewRecord(
                r.event_id,
                r.action_type,
                r.occurred_at,
                r.flagged_at,
                list(r.rules),
                list(r.details),
                r.points,
                r.status,
                r.decided_at,
                r.reason,
            )
            for r in rows
        ]
    )


async def erase_participant(session: AsyncSession, participant_id: uuid.UUID) -> None:
    """Clear reviewers' notes on the participant's flags; the flags stay (see the module)."""
    await ReviewRepository.from_session(session).clear_notes(participant_id)
