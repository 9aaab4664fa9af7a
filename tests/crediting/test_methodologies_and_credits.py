"""Methodology versions take over at their effective time; credits recompute exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from points_rules import Action, Usage, evaluate
from service.crediting.schemas import engine_inputs
from service.methodologies.service import (
    MethodologyChangedError,
    file_methodology,
    library_sources,
)
from service.models import Credit, MethodologyVersion
from tests.crediting.conftest import Live, metro

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _metro_v2(effective: str) -> str:
    source = dict(library_sources())["transit.metro.yaml"]
    return (
        source.replace("version: 1", "version: 2", 1)
        .replace("effective_from: 2025-01-01", f"effective_from: {effective}", 1)
        .replace("    value: 46.7\n", "    value: 50\n", 1)
        .replace(
            'source: "Shenzhen methodology (citysz.net 2022-09-23): metro saving vs the '
            'general travel mix, 46.7 g CO2e per passenger-km"',
            'source: "program choice: test figure for a version switch"',
            1,
        )
    )


async def test_a_new_version_takes_over_exactly_at_its_effective_time(live: Live) -> None:
    switch_day = (datetime.now(SHANGHAI) - timedelta(days=1)).date()
    switch = datetime.combine(switch_day, datetime.min.time(), SHANGHAI)
    async with live.sessionmaker() as session, session.begin():
        await session.execute(
            update(MethodologyVersion)
            .where(MethodologyVersion.methodology_id == "transit.metro")
            .where(MethodologyVersion.version == 1)
            .values(effective_to=switch)
        )
        await file_methodology(session, _metro_v2(switch_day.isoformat()))
    metro_co = await live.partner("metro-co")
    rider = await live.participant()
    await live.link(rider, metro_co, "6222020000000001")
    async with live.client(metro_co) as client:
        before = await client.submit_event(
            metro("last-of-v1", occurred_at=switch - timedelta(seconds=1))
        )
        after = await client.submit_event(metro("first-of-v2", occurred_at=switch))
    assert (before.methodology_version, before.grams) == (1, 576)  # 12.345 x 46.7
    assert (after.methodology_version, after.grams) == (2, 617)  # 12.345 x 50 = 617.25


async def test_a_filed_version_cannot_change(live: Live) -> None:
    async with live.sessionmaker() as session, session.begin():
        with pytest.raises(MethodologyChangedError):
            await file_methodology(
                session, _metro_v2("2026-01-01").replace("version: 2", "version: 1")
            )
    with pytest.raises(DBAPIError, match="immutable"):
        async with live.sessionmaker() as session, session.begin():
            await session.execute(
                update(MethodologyVersion)
                .where(MethodologyVersion.methodology_id == "transit.metro")
                .values(source_yaml="tampered")
            )


async def test_every_credit_recomputes_to_the_same_numbers(live: Live) -> None:
    metro_co = await live.partner("metro-co")
    rider = await live.participant()
    await live.link(rider, metro_co, "6222020000000001")
    async with live.client(metro_co) as client:
        await client.submit_events(
            [
                metro(f"t{i}", quantities={"distance_m": 8000 + 1111 * i, "duration_s": 900})
                for i in range(6)
            ]
        )
    async with live.sessionmaker() as session:
        registry = await live.app.state.registry_cache.get(session)
        credits = (await session.execute(select(Credit))).scalars().all()
    assert len(credits) == 6
    assert {c.status for c in credits} == {"credited", "capped"}
    for credit in credits:
        methodology = registry.get(credit.methodology_id, credit.methodology_version)
        action = Action(
            action_type=credit.action_type,
            occurred_at=credit.occurred_at,
            received_at=credit.received_at,
            inputs=engine_inputs(credit.inputs),
            region=credit.region,
        )
        usage = {k: Usage(g, p) for k, (g, p) in credit.usage_before.items()}
        again = evaluate(methodology, action, usage)
        assert (again.status, again.grams, again.points) == (
            credit.status,
            credit.grams,
            credit.points,
        )
    with pytest.raises(DBAPIError, match="append-only"):
        async with live.sessionmaker() as session, session.begin():
            await session.execute(update(Credit).values(points=1_000_000))


async def test_pending_events_expire_after_the_claim_window(live: Live) -> None:
    from service.crediting.service import expire_pending

    metro_co = await live.partner("metro-co")
    async with live.client(metro_co) as client:
        waiting = await client.submit_event(metro("trip-1", card="never-linked"))
    assert waiting.status == "pending"
    async with live.sessionmaker() as session, session.begin():
        registry = await live.app.state.registry_cache.get(session)
        now = datetime.now(UTC)
        assert await expire_pending(session, registry, now=now) == 0
        assert await expire_pending(session, registry, now=now + timedelta(days=8)) == 1
    async with live.client(metro_co) as client:
        closed = await client.get_event("trip-1")
    assert closed.status == "expired"
    assert closed.reasons[0].code == "claim_window_passed"
