"""PgBouncer in transaction pooling mode (Debian's pgbouncer, 1.18: no prepared statements
across transactions) in front of the test server, with a server pool of two connections so
that every client's transactions and autocommit statements hop between server connections.

The rest of the database suite's crediting, redemption and reads run through a PgBouncer
too: `make pytest-scaling` (CARBON_POINTS_TEST_PGBOUNCER=1).
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from integrations import Event
from service.app import create_app
from service.config import Settings
from service.db import (
    behind_pgbouncer,
    create_engine,
    create_read_pool,
    create_read_sessionmaker,
    create_sessionmaker,
    try_advisory_lock,
)
from service.ledger.verify import verify_ledger
from service.methodologies.service import sync_library
from service.models import Credit, PartnerEvent
from service.worker import run_worker
from tests.crediting.conftest import TRIP_AT, Live, metro
from tests.scaling_servers import PgBouncerServer, missing_pgbouncer

KEY = "a-partner-signing-key-for-the-worker-test"


@pytest.fixture(scope="module")
def bouncer(server_url: str) -> Iterator[PgBouncerServer]:
    if reason := missing_pgbouncer():
        pytest.skip(reason)
    server = PgBouncerServer(
        Path(tempfile.mkdtemp(prefix="cp-test-pgbouncer-")), server_url, pool_size=2
    )
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def bounced_url(bouncer: PgBouncerServer, test_settings: Settings) -> str:
    assert test_settings.database_url is not None
    database = make_url(test_settings.database_url).database
    assert database is not None
    return bouncer.url(database)


async def _hop_between_servers(engine: AsyncEngine, read_pool: asyncpg.Pool | None) -> int:
    """Forty clients' autocommit reads (the app's read session and read pool), transactions
    and parameterised statements, interleaved over a pool of two server connections."""
    read = create_read_sessionmaker(engine)
    write = create_sessionmaker(engine)

    async def client(n: int) -> int:
        total = 0
        for i in range(5):
            async with read() as session:
                total += int(
                    await session.scalar(
                        text("SELECT CAST(:n AS int) + CAST(:i AS int)"), {"n": n, "i": i}
                    )
                    or 0
                )
            async with write() as session, session.begin():
                await session.execute(
                    text("SELECT count(*) FROM partners WHERE code = :c"), {"c": str(n)}
                )
            if read_pool is None:
                total += 2 * i
                continue
            async with read_pool.acquire() as connection:
                total += int(await connection.fetchval("SELECT $1::int * 2", i))
        return total

    return sum(await asyncio.gather(*(client(n) for n in range(40))))


async def test_statements_hop_servers_safely_with_the_setting(bounced_url: str) -> None:
    engine = create_engine(bounced_url, pool_size=10, pgbouncer=True)
    assert behind_pgbouncer(engine)
    read_pool = await create_read_pool(engine, size=10)
    try:
        # sum over n<40, i<5 of (n + i) + 2i = 5 * 780 + 40 * (10 + 20)
        assert await _hop_between_servers(engine, read_pool) == 5 * 780 + 40 * 30
    finally:
        await read_pool.close()
        await engine.dispose()


async def test_without_the_setting_prepared_statements_break(bounced_url: str) -> None:
    """The control: asyncpg's named, cached statements through the same PgBouncer fail, and
    so does the read pool's read-only startup parameter: the test above shows the setting
    at work, not a PgBouncer too kind to notice."""
    engine = create_engine(bounced_url, pool_size=10, pgbouncer=False)
    try:
        with pytest.raises(DBAPIError, match="prepared statement"):
            await _hop_between_servers(engine, None)
        read_pool = await create_read_pool(engine, size=1)  # connects on demand
        try:
            with pytest.raises(asyncpg.PostgresError, match="unsupported startup parameter"):
                await read_pool.fetchval("SELECT 1")
        finally:
            await read_pool.close()
    finally:
        await engine.dispose()


async def test_the_worker_lock_holds_through_pgbouncer(
    bounced_url: str, test_settings: Settings, committed: AsyncEngine
) -> None:
    """The worker's advisory lock is a transaction's: held for the block on one server
    connection, refused to another client meanwhile, released at the end, while the other
    server connection keeps serving everyone else."""
    engine = create_engine(bounced_url, pool_size=4, pgbouncer=True)
    try:
        async with try_advisory_lock(engine, 4242) as got:
            assert got
            async with try_advisory_lock(engine, 4242) as other:
                assert not other
            async with engine.connect() as connection:  # the rest of the traffic goes on
                assert await connection.scalar(text("SELECT 1")) == 1
        async with try_advisory_lock(engine, 4242) as again:
            assert again
        # And no session-level advisory lock is left behind on any server connection.
        async with committed.connect() as direct:
            leaked = await direct.scalar(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242")
            )
        assert leaked == 0
    finally:
        await engine.dispose()
    bounced = test_settings.model_copy(update={"database_url": bounced_url, "db_pgbouncer": True})
    done = await run_worker(bounced, bounced_url, KEY, once=True)
    assert set(done) == {"webhooks", "holds", "pending", "lots"}


@pytest.fixture
async def bounced_live(
    bounced_url: str, test_settings: Settings, committed: AsyncEngine
) -> AsyncIterator[Live]:
    """The whole app through PgBouncer; the test's own checks go direct."""
    app: FastAPI = create_app(
        test_settings.model_copy(
            update={"database_url": bounced_url, "db_pgbouncer": True, "db_pool_size": 8}
        )
    )
    sessionmaker = create_sessionmaker(committed)
    async with sessionmaker() as session, session.begin():
        await sync_library(session)
    async with app.router.lifespan_context(app):
        assert behind_pgbouncer(app.state.engine)
        yield Live(app, sessionmaker, httpx.ASGITransport(app=app, raise_app_exceptions=False))


async def test_crediting_through_pgbouncer_is_exactly_once(bounced_live: Live) -> None:
    """Batches and single events from six senders at once, every event sent twice (racing
    itself), through two server connections: each event is one row and at most one credit,
    the answers agree, and the ledger verifies."""
    live = bounced_live
    metro_co = await live.partner(f"metro-{uuid.uuid4().hex[:6]}")
    riders = [await live.participant() for _ in range(4)]
    for n, rider in enumerate(riders):
        await live.link(rider, metro_co, f"62220200000001{n:02d}")
    events = [
        metro(
            f"trip-{n}-{i}",
            card=f"62220200000001{n:02d}",
            occurred_at=TRIP_AT + timedelta(minutes=i),
        )
        for n in range(len(riders))
        for i in range(15)
    ]

    async def batches(chunk: list[Event]) -> dict[str, str | None]:
        async with live.client(metro_co) as client:
            outcomes = await client.submit_events(chunk, batch_size=5)
        return {o.external_id: o.credit_id for o in outcomes}

    async def singles(chunk: list[Event]) -> dict[str, str | None]:
        async with live.client(metro_co) as client:
            outcomes = [await client.submit_event(e) for e in chunk]
        return {o.external_id: o.credit_id for o in outcomes}

    halves = [events[0::2], events[1::2]]
    answers = await asyncio.gather(
        *(batches(h) for h in halves), *(singles(h) for h in halves), batches(events[::-1])
    )
    merged: dict[str, str | None] = {}
    for answer in answers:
        for external_id, credit_id in answer.items():
            assert merged.setdefault(external_id, credit_id) == credit_id, external_id
    assert set(merged) == {e.external_id for e in events}

    async with live.sessionmaker() as session:
        rows = int(await session.scalar(select(func.count()).select_from(PartnerEvent)) or 0)
        credits = int(await session.scalar(select(func.count()).select_from(Credit)) or 0)
    assert rows == len(events)
    assert credits == len({c for c in merged.values() if c}) > 0
    assert (await verify_ledger(live.sessionmaker.kw["bind"])).ok
