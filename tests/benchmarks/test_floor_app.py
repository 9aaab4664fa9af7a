"""Smoke test of the crediting benchmark's floors (benchmarks/floor_app.py), over ASGI.

Each floor gets its own database on the test server (the minimal one its three tables, the
same-writes one the real schema at head), answers the SDK's signed requests with outcomes the
SDK accepts, credits each event exactly once, answers a re-send with the original outcome, and
refuses a wrong signature. The same-writes floor's rows pass `ledger verify`.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from benchmarks.floor_app import Config, create_app, create_minimal_schema
from integrations import AsyncCarbonPointsClient, AuthenticationError, Event
from service import migrations
from service.db import create_engine
from service.embedded import to_asyncpg_dsn
from service.ledger.verify import verify_ledger
from service.partners.credentials import subject_hash
from tests.conftest import TEST_DATABASE, drop_database, recreate_database

CARDS = ["6222000000000001", "6222000000000002"]
UNLINKED = "6222000000009999"


async def _seed_same_writes(dsn: str, partner_id: uuid.UUID, pepper: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO partners (id, code, name, kind, allowed_action_types)"
            " VALUES ($1, 'floor', 'Floor', 'transit', ARRAY['transit.metro'])",
            partner_id,
        )
        for card in CARDS:
            participant = uuid.uuid4()
            await conn.execute(
                "INSERT INTO participants (id, kind, display_name) VALUES ($1, 'citizen', 'r')",
                participant,
            )
            await conn.execute(
                "INSERT INTO identity_links (participant_id, partner_id, subject_hash)"
                " VALUES ($1, $2, $3)",
                participant,
                partner_id,
                subject_hash(pepper, partner_id, card),
            )
    finally:
        await conn.close()


@pytest.fixture(params=["minimal", "samewrites"])
async def floor(request: pytest.FixtureRequest, server_url: str) -> AsyncIterator[Config]:
    mode: str = request.param
    name = f"{TEST_DATABASE}_{mode}"
    url = await recreate_database(server_url, name)
    partner_id = uuid.uuid4()
    pepper = secrets.token_urlsafe(16)
    if mode == "minimal":
        await create_minimal_schema(to_asyncpg_dsn(url))
    else:
        await asyncio.to_thread(migrations.upgrade, url)
        await _seed_same_writes(to_asyncpg_dsn(url), partner_id, pepper)
    yield Config(
        mode=mode,
        database_url=to_asyncpg_dsn(url),
        key_id="pk_floor",
        secret=secrets.token_urlsafe(24),
        partner_id=partner_id,
        pepper=pepper,
        pool=2,
    )
    await drop_database(server_url, name)


@pytest.fixture
async def app(floor: Config) -> AsyncIterator[FastAPI]:
    application = create_app(floor)
    async with application.router.lifespan_context(application):
        yield application


def _client(app: FastAPI, config: Config, secret: str | None = None) -> AsyncCarbonPointsClient:
    return AsyncCarbonPointsClient(
        "http://floor",
        key_id=config.key_id,
        secret=secret or config.secret,
        max_retries=0,
        transport=httpx.ASGITransport(app=app),
    )


def _event(external_id: str, card: str, distance_m: int) -> Event:
    return Event(
        external_id=external_id,
        action_type="transit.metro",
        occurred_at=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30),
        subject_ref=card,
        quantities={"distance_m": distance_m, "duration_s": 900},
        place_ids=["station:M-001", "station:M-017"],
    )


async def test_floor_credits_exactly_once(app: FastAPI, floor: Config) -> None:
    client = _client(app, floor)
    batch = [_event(f"b-{i}", CARDS[i % 2], 5_000 + i * 1_000) for i in range(4)]
    outcomes = await client.submit_events(batch, batch_size=4)
    assert [o.status for o in outcomes] == ["credited"] * 4
    assert len({o.credit_id for o in outcomes}) == 4
    expected = [e.quantities["distance_m"] for e in batch]
    if floor.mode == "minimal":
        assert [o.points for o in outcomes] == [int(d) // 100 for d in expected]
    else:
        assert [o.grams for o in outcomes] == [int(d) * 467 // 10_000 for d in expected]
        assert [o.points for o in outcomes] == [o.grams for o in outcomes]

    # A re-send inside a new batch gets the original outcome; the new event is credited.
    again = await client.submit_events([batch[1], _event("b-9", CARDS[0], 9_000)], batch_size=2)
    assert again[0] == outcomes[1]
    assert again[1].status == "credited"
    single = await client.submit_event(_event("s-1", CARDS[1], 12_000))
    assert single.status == "credited"
    assert await client.submit_event(_event("s-1", CARDS[1], 12_000)) == single

    with pytest.raises(AuthenticationError):
        await _client(app, floor, secret="wrong").submit_event(_event("x-1", CARDS[0], 1_000))

    conn = await asyncpg.connect(floor.database_url)
    try:
        if floor.mode == "minimal":
            assert await conn.fetchval("SELECT count(*) FROM floor_events") == 6
            assert await conn.fetchval("SELECT count(*) FROM floor_postings") == 12
            assert await conn.fetchval("SELECT sum(amount) FROM floor_postings") == 0
            total = await conn.fetchval("SELECT sum(points) FROM floor_events")
            assert await conn.fetchval("SELECT sum(points) FROM floor_balances") == total
        else:
            assert await conn.fetchval("SELECT count(*) FROM partner_events") == 6
            assert await conn.fetchval("SELECT count(*) FROM credits") == 6
            assert await conn.fetchval("SELECT count(*) FROM ledger_postings") == 24
            assert await conn.fetchval("SELECT count(*) FROM ledger_lot_movements") == 6
            assert await conn.fetchval("SELECT count(*) FROM cap_usage") == 4
            stray = await conn.fetchval(
                "SELECT count(*) FROM partner_events e LEFT JOIN credits c ON c.event_id = e.id"
                " WHERE e.status <> 'credited' OR c.transaction_id IS DISTINCT FROM"
                " e.credit_transaction_id"
            )
            assert stray == 0
    finally:
        await conn.close()

    if floor.mode == "samewrites":
        # An unlinked card waits, as in the service; nothing reaches the ledger for it.
        waiting = await client.submit_event(_event("p-1", UNLINKED, 5_000))
        assert (waiting.status, waiting.credit_id) == ("pending", None)
        engine = create_engine(floor.database_url, pool_size=1)
        try:
            report = await verify_ledger(engine)
        finally:
            await engine.dispose()
        assert report.ok, report.violations
        assert report.transactions == 6
    await client.close()
