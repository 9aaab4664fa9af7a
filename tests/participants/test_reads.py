"""What a citizen sees: balance, reductions, history, explanations, leaderboards."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from service.models import Participant
from service.participants import service as reads
from tests.crediting.conftest import TRIP_AT, Live, metro


async def _rider_with_trips(live: Live, code: str, card: str, trips: int) -> uuid.UUID:
    partner = await live.partner(code)
    rider = await live.participant()
    async with live.sessionmaker() as session, session.begin():
        await session.execute(
            update(Participant).where(Participant.id == rider).values(region="CN-JX")
        )
    await live.link(rider, partner, card)
    async with live.client(partner) as client:
        await client.submit_events(
            [
                metro(f"{code}-{i}", card=card, occurred_at=TRIP_AT + timedelta(minutes=30 * i))
                for i in range(trips)
            ]
        )
    return rider


async def test_balance_reductions_and_history(live: Live) -> None:
    rider = await _rider_with_trips(live, "metro-co", "card-1", 3)
    async with live.sessionmaker() as session:
        balance = await reads.balance(session, rider)
        rows = await reads.reductions(session, rider, "Asia/Shanghai")
        first = await reads.history(session, rider, cursor=None, limit=2)
        assert first.next_cursor is not None
        second = await reads.history(session, rider, cursor=first.next_cursor, limit=2)
    assert (balance.available, balance.grams_co2e, balance.on_hold) == (1728, 1728, 0)
    assert [e.points for e in balance.expiring] == [1728]
    assert [(r.action_type, r.grams, r.credits) for r in rows] == [("transit.metro", 1728, 3)]
    assert [i.points for i in first.items + second.items] == [576, 576, 576]
    assert [i.sequence for i in first.items + second.items] == [3, 2, 1]
    assert second.next_cursor is None
    assert {i.methodology_id for i in first.items} == {"transit.metro"}


async def test_a_credit_explains_itself_to_its_owner_only(live: Live) -> None:
    rider = await _rider_with_trips(live, "metro-co", "card-1", 1)
    stranger = await live.participant()
    async with live.sessionmaker() as session:
        registry = await live.app.state.registry_cache.get(session)
        credit_id = int(
            (await reads.history(session, rider, cursor=None, limit=1)).items[0].credit_id or 0
        )
        explanation = await reads.explain_credit(session, registry, rider, credit_id)
        with pytest.raises(reads.CreditNotFoundError):
            await reads.explain_credit(session, registry, stranger, credit_id)
    assert (explanation.grams, explanation.points) == (576, 576)
    assert "46.7 g/km" in explanation.text
    assert "citysz.net" in explanation.text
    assert explanation.trace["outcome"]["points"] == 576


async def test_leaderboards_rank_by_grams_and_cache_in_redis(live: Live) -> None:
    light = await _rider_with_trips(live, "metro-a", "card-a", 1)
    heavy = await _rider_with_trips(live, "metro-b", "card-b", 3)
    now = datetime.now(UTC)
    async with live.sessionmaker() as session:
        board = await reads.leaderboard(
            session,
            live.app.state.redis,
            scope="region",
            key="CN-JX",
            participant_filter=reads.region_filter("CN-JX"),
            period="month",
            now=now,
            tz="Asia/Shanghai",
        )
    assert [(e.participant_id, e.grams) for e in board.entries] == [
        (str(heavy), 1728),
        (str(light), 576),
    ]
    key = f"cp:{{leaderboard:region:CN-JX:{board.period}}}"
    assert await live.app.state.redis.zscore(key, str(heavy)) == 1728
    async with live.sessionmaker() as session:
        again = await reads.leaderboard(
            session,
            live.app.state.redis,
            scope="region",
            key="CN-JX",
            participant_filter=reads.region_filter("CN-JX"),
            period="month",
            now=now,
            tz="Asia/Shanghai",
        )
    assert again.entries == board.entries
