"""Regressions found in review: link races, exact decimals, regions, keys and terminals."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from service.models import PartnerEvent
from tests.crediting.conftest import TRIP_AT, Live, metro


async def test_an_event_arriving_while_its_identity_is_linked_is_never_stranded(
    live: Live,
) -> None:
    metro_co = await live.partner("metro-co")
    for round_ in range(8):
        rider = await live.participant()
        card = f"race-card-{round_}"

        async def send(card: str = card, n: int = round_) -> None:
            async with live.client(metro_co) as client:
                await client.submit_event(metro(f"race-{n}", card=card))

        await asyncio.gather(send(), live.link(rider, metro_co, card))
        async with live.sessionmaker() as session:
            status = await session.scalar(
                select(PartnerEvent.status).where(PartnerEvent.external_id == f"race-{round_}")
            )
        assert status == "credited", round_
        assert await live.balance(rider) == 576


async def test_long_exact_decimals_survive_a_pending_wait(live: Live) -> None:
    metro_co = await live.partner("metro-co")
    distance = Decimal("12345.0000000001")
    async with live.client(metro_co) as client:
        waiting = await client.submit_event(
            metro("long-1", card="new-card", quantities={"distance_m": distance})
        )
    assert waiting.status == "pending"
    rider = await live.participant()
    released = await live.link(rider, metro_co, "new-card")
    assert [o.status for o in released] == ["credited"]
    assert await live.balance(rider) == 576


async def test_a_released_event_keeps_the_partners_region(live: Live) -> None:
    from sqlalchemy import update

    from service.models import Partner

    wuhan = await live.partner("wuhan-metro")
    async with live.sessionmaker() as session, session.begin():
        await session.execute(
            update(Partner).where(Partner.code == "wuhan-metro").values(region="CN-HB-WH")
        )
    live.app.state.partner_credentials.clear()
    linked = await live.participant()
    await live.link(linked, wuhan, "card-linked")
    async with live.client(wuhan) as client:
        now_credited = await client.submit_event(metro("w1", card="card-linked"))
        later = await client.submit_event(
            metro("w2", card="card-later", occurred_at=TRIP_AT + timedelta(minutes=30))
        )
    assert later.status == "pending"
    rider = await live.participant()
    (released,) = await live.link(rider, wuhan, "card-later")
    assert now_credited.methodology_id == released.methodology_id == "transit.metro.cn-hb-wh"
    assert now_credited.grams == released.grams == 967  # 12.345 km x 78.4 g/km = 967.848
