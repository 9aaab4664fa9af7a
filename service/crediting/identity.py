"""Identity links, for the other domains: which partner identities a participant has linked.

`identity_links` is crediting's table: the crediting path resolves every event's subject
through it, and linking an identity credits the events waiting on it in the same transaction
(`service.crediting.service.link_identity`). The participants' app lists and ends links, and
privacy exports and erases them, through these functions.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service.crediting import repository
from service.crediting.repository import ActiveLink

__all__ = ["ActiveLink", "active_links", "end_link"]


async def active_links(
    session: AsyncSession,
    participant_id: uuid.UUID,
    *,
    offset: int = 0,
    limit: int | None = None,
) -> list[ActiveLink]:
    """The participant's active links, oldest first."""
    return await repository.active_links(session, participant_id, offset=offset, limit=limit)


async def end_link(
    session: AsyncSession, participant_id: uuid.UUID, link_id: int, now: datetime
) -> bool:
    """End the participant's active link; False when there is no such link."""
    return await repository.end_link(session, participant_id, link_id, now)
