"""Demo data for `make run`, written idempotently: running it twice changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from service.ledger import service as ledger
from service.ledger.schemas import CreditRequest
from service.merchants.service import ensure_demo_merchant
from service.methodologies.service import sync_library
from service.models import ParticipantKind
from service.participants.service import ensure_participants
from service.partners.service import ensure_demo_partner

DEMO_CITIZEN_ID = uuid.UUID("00000000-0000-4000-8000-00000000c171")
DEMO_BUSINESS_ID = uuid.UUID("00000000-0000-4000-8000-00000000b175")


async def seed_demo_data(session: AsyncSession, partner_key: str | None = None) -> dict[str, str]:
    """Insert the demo rows that do not exist yet; return what the demo offers."""
    await ensure_participants(
        session,
        [
            (DEMO_CITIZEN_ID, ParticipantKind.CITIZEN.value, "Demo citizen", "CN-JX"),
            (DEMO_BUSINESS_ID, ParticipantKind.BUSINESS.value, "Demo tea shop", "CN-JX"),
        ],
    )
    # A week of metro trips for the demo citizen, keyed so a second seed changes nothing.
    # 12.345 km x 46.7 g/km (Shenzhen) = 576 g, credited as 576 points (1 point = 1 g).
    start = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    trips = [
        CreditRequest(
            origin="demo-seed",
            key=f"metro-{day}",
            participant_id=DEMO_CITIZEN_ID,
            points=576,
            grams=576,
            expires_at=start + timedelta(days=day + 730),
            methodology_id="transit.metro",
            methodology_version=1,
        )
        for day in range(7)
    ]
    await ledger.credit(session, trips, now=start)
    await sync_library(session)
    offered = {
        "demo citizen": str(DEMO_CITIZEN_ID),
        "demo business": str(DEMO_BUSINESS_ID),
    }
    if partner_key is not None:
        demo = await ensure_demo_partner(
            session,
            partner_key,
            code="demo-metro",
            name="Demo metro card system",
            kind="transit",
            action_types=("transit.metro", "transit.bus"),
            region="CN-JX",
        )
        offered["demo partner"] = "demo-metro"
        offered["demo partner key id"] = demo.key_id
        offered["demo partner secret"] = demo.secret
        token = await ensure_demo_merchant(session, partner_key)
        offered["demo merchant"] = "demo-cafe"
        offered["demo merchant api key"] = token
    return offered
