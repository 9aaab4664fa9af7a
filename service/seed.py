"""Demo data for `make run`, written idempotently: running it twice changes nothing."""

from __future__ import annotations

import uuid

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import Participant, ParticipantKind

DEMO_CITIZEN_ID = uuid.UUID("00000000-0000-4000-8000-00000000c171")
DEMO_BUSINESS_ID = uuid.UUID("00000000-0000-4000-8000-00000000b175")


async def seed_demo_data(session: AsyncSession) -> dict[str, str]:
    """Insert the demo rows that do not exist yet; return what the demo offers."""
    rows = [
        {
            "id": DEMO_CITIZEN_ID,
            "kind": ParticipantKind.CITIZEN.value,
            "display_name": "Demo citizen",
            "region": "CN-JX",
        },
        {
            "id": DEMO_BUSINESS_ID,
            "kind": ParticipantKind.BUSINESS.value,
            "display_name": "Demo tea shop",
            "region": "CN-JX",
        },
    ]
    await session.execute(insert(Participant).values(rows).on_conflict_do_nothing())
    return {
        "demo citizen": str(DEMO_CITIZEN_ID),
        "demo business": str(DEMO_BUSINESS_ID),
    }
