"""Demo data for `make run`, written idempotently: running it twice changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.ledger import service as ledger
from service.ledger.schemas import CreditRequest
from service.merchants.service import create_merchant, create_offer
from service.methodologies.service import sync_library
from service.models import Merchant, MerchantApiKey, Participant, ParticipantKind
from service.partners.service import ensure_demo_partner

DEMO_CITIZEN_ID = uuid.UUID("00000000-0000-4000-8000-00000000c171")
DEMO_BUSINESS_ID = uuid.UUID("00000000-0000-4000-8000-00000000b175")


async def seed_demo_data(session: AsyncSession, partner_key: str | None = None) -> dict[str, str]:
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


async def ensure_demo_merchant(session: AsyncSession, partner_key: str) -> str:
    """A demo café with an offer; its key is derived (like partner secrets) so it is stable."""
    import hashlib
    import hmac

    merchant = await session.scalar(select(Merchant).where(Merchant.code == "demo-cafe"))
    if merchant is None:
        merchant = await create_merchant(
            session, code="demo-cafe", name="Demo café", region="CN-JX"
        )
        now = datetime.now(UTC)
        await create_offer(
            session,
            merchant.id,
            title="Oat latte",
            points_price=500,
            face_value_fen=1500,
            valid_from=now - timedelta(days=1),
            valid_to=now + timedelta(days=365),
            region="CN-JX",
        )
    key_id = "mk_demo" + merchant.id.hex[:13]
    secret = hmac.new(
        partner_key.encode(), b"demo-merchant\x00" + merchant.id.bytes, hashlib.sha256
    ).hexdigest()
    if await session.get(MerchantApiKey, key_id) is None:
        session.add(
            MerchantApiKey(
                key_id=key_id,
                merchant_id=merchant.id,
                scopes=["redeem", "refund", "settlement"],
                secret_hash=hashlib.sha256(secret.encode()).digest(),
            )
        )
        await session.flush()
    return f"cpmk_{key_id}_{secret}"
