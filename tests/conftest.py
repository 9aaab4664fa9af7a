"""Shared fixtures: real PostgreSQL and Redis, never mocks.

`DATABASE_URL` / `REDIS_URL` point the suite at real servers (CI uses the
machine's own); unset, the embedded servers start under `.data/test`. Either
way the suite gets a fresh database built by `alembic upgrade head`, and each
test runs inside a transaction that is rolled back. Tests that need real
commits across connections (concurrency) use `committed` and get every table
truncated afterwards.

Two switches run the same tests on the scaled-out layout (docs/scaling.md; `make
pytest-scaling` runs both):
- `CARBON_POINTS_TEST_REDIS_CLUSTER=1`: Redis is a 3-master Redis Cluster started for the
  run from Debian's redis-server (`tests/scaling_servers.py`);
- `CARBON_POINTS_TEST_PGBOUNCER=1`: the app, its engines and the tests' own reach PostgreSQL
  through a PgBouncer in transaction pooling mode started for the run
  (`CARBON_POINTS_DB_PGBOUNCER` on); migrations and database creation go direct.
Either is refused with the reason when its server is not installed.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from hypothesis import settings
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from service import migrations
from service.app import create_app
from service.config import Settings
from service.db import create_engine, get_session, get_streaming_session
from service.embedded import resolve_servers, to_asyncpg_dsn
from service.models import Base
from service.redis import RedisClient, create_redis
from tests.scaling_servers import (
    PgBouncerServer,
    RedisClusterServer,
    missing_pgbouncer,
    missing_redis_cluster,
)

# CI replays the same examples on every run (a red build must be reproducible); locally,
# Hypothesis explores new ones each time.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

TEST_DATA_DIR = Path(__file__).resolve().parents[1] / ".data" / "test"
# One database per test process: parallel runs against one server never collide.
TEST_DATABASE = f"carbon_points_test_{os.getpid()}"
# Redis has no per-process databases; a second suite run beside this one picks another db.
TEST_REDIS_DB = int(os.environ.get("CARBON_POINTS_TEST_REDIS_DB", "15"))
TEST_REDIS_CLUSTER = os.environ.get("CARBON_POINTS_TEST_REDIS_CLUSTER", "") == "1"
TEST_PGBOUNCER = os.environ.get("CARBON_POINTS_TEST_PGBOUNCER", "") == "1"
# The test database's URL on the server itself (not through PgBouncer): set by test_settings.
_DIRECT: dict[str, str] = {}


async def _on_server(server_url: str, *statements: str) -> None:
    parsed = make_url(to_asyncpg_dsn(server_url))
    admin = await asyncpg.connect(
        parsed.set(database="postgres").render_as_string(hide_password=False)
    )
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


async def recreate_database(server_url: str, name: str) -> str:
    """Drop and create `name` on the server of `server_url`; return its URL."""
    await _on_server(
        server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'
    )
    parsed = make_url(to_asyncpg_dsn(server_url))
    return parsed.set(database=name).render_as_string(hide_password=False)


def _test_redis_url(url: str) -> str:
    if url.startswith("unix://"):
        return url.split("?", 1)[0] + f"?db={TEST_REDIS_DB}"
    parsed = make_url(url.replace("redis://", "postgresql://", 1))
    return (
        "redis://"
        + parsed.set(database=str(TEST_REDIS_DB))
        .render_as_string(hide_password=False)
        .split("://", 1)[1]
    )


async def drop_database(server_url: str, name: str) -> None:
    await _on_server(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def test_settings() -> Iterator[Settings]:
    TEST_DATA_DIR.mkdir(parents=True, exist_ok=True)
    base = Settings(data_dir=TEST_DATA_DIR, environment="test")
    servers = resolve_servers(base, database_name="postgres")
    database_url = asyncio.run(recreate_database(servers.database_url, TEST_DATABASE))
    migrations.upgrade(database_url)
    _DIRECT["database_url"] = database_url
    update: dict[str, object] = {
        "database_url": database_url,
        "redis_url": _test_redis_url(servers.redis_url),
    }
    stops = []
    try:
        if TEST_REDIS_CLUSTER:
            if reason := missing_redis_cluster():
                raise pytest.UsageError(f"CARBON_POINTS_TEST_REDIS_CLUSTER=1, but {reason}")
            cluster = RedisClusterServer(
                Path(tempfile.mkdtemp(prefix="cp-test-cluster-")), replicas=0
            )
            stops.append(cluster.stop)
            cluster.start()
            update.update(redis_url=cluster.url, redis_cluster=True)
        if TEST_PGBOUNCER:
            if reason := missing_pgbouncer():
                raise pytest.UsageError(f"CARBON_POINTS_TEST_PGBOUNCER=1, but {reason}")
            bouncer = PgBouncerServer(
                Path(tempfile.mkdtemp(prefix="cp-test-pgbouncer-")), servers.database_url
            )
            stops.append(bouncer.stop)
            bouncer.start()
            update.update(database_url=bouncer.url(TEST_DATABASE), db_pgbouncer=True)
        yield base.model_copy(update=update)
    finally:
        for stop in reversed(stops):
            stop()
        asyncio.run(drop_database(servers.database_url, TEST_DATABASE))


@pytest.fixture(scope="session")
def server_url(test_settings: Settings) -> str:
    """A URL to the test server's maintenance database, for tests that make their own
    (on the server itself, never through PgBouncer)."""
    return (
        make_url(_DIRECT["database_url"])
        .set(database="postgres")
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session")
async def engine(test_settings: Settings) -> AsyncIterator[AsyncEngine]:
    assert test_settings.database_url is not None
    engine = create_engine(
        test_settings.database_url, pool_size=20, pgbouncer=test_settings.db_pgbouncer
    )
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        outer = await conn.begin()
        try:
            yield conn
        finally:
            await outer.rollback()


@pytest.fixture
async def db(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    """A session whose commits are savepoints inside a transaction rolled back at the end."""
    session = AsyncSession(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    try:
        yield session
    finally:
        await session.close()


@pytest.fixture
async def committed(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """For tests whose work must really commit (concurrency); every table emptied after."""
    yield engine
    await empty_all_tables(engine)


async def empty_all_tables(engine: AsyncEngine) -> None:
    """Every table emptied, the program's own accounts kept (zeroed)."""
    tables = ", ".join(
        f'"{t.name}"' for t in Base.metadata.sorted_tables if t.name != "ledger_accounts"
    )
    async with engine.begin() as conn:
        # Replica role skips the append-only triggers that protect the ledger in production.
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        # The program's own accounts come from the migration: keep them, zeroed.
        await conn.execute(text("DELETE FROM ledger_accounts WHERE owner_type <> 'program'"))
        await conn.execute(
            text(
                "UPDATE ledger_accounts SET posted = 0, held = 0, chain_seq = 0,"
                " chain_hash = decode(repeat('00', 32), 'hex')"
            )
        )


@pytest.fixture
async def redis(test_settings: Settings) -> AsyncIterator[RedisClient]:
    assert test_settings.redis_url is not None
    client = create_redis(test_settings.redis_url, cluster=test_settings.redis_cluster)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServer]:
    """A real Redis Cluster for this run: 3 masters, a replica each (so that killing a master
    fails over), from Debian's redis-server on free local ports; skipped, with the reason,
    where redis-server is not installed."""
    if reason := missing_redis_cluster():
        pytest.skip(reason)
    cluster = RedisClusterServer(Path(tempfile.mkdtemp(prefix="cp-test-cluster-")), replicas=1)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
async def app(test_settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(test_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(
    app: FastAPI, db: AsyncSession, redis: RedisClient
) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ASGI, its request sessions joined to the test's rolled-back transaction."""

    async def test_session() -> AsyncIterator[AsyncSession]:
        yield db
        await db.flush()

    app.dependency_overrides[get_session] = test_session
    app.dependency_overrides[get_streaming_session] = test_session
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
    app.dependency_overrides.clear()


def pytest_report_header() -> list[str]:
    return [
        f"DATABASE_URL: {'set' if os.environ.get('DATABASE_URL') else 'unset (embedded)'}"
        + (" (through a PgBouncer, transaction pooling)" if TEST_PGBOUNCER else ""),
        f"REDIS_URL: {'set' if os.environ.get('REDIS_URL') else 'unset (embedded)'}"
        + (" (replaced by a 3-master Redis Cluster)" if TEST_REDIS_CLUSTER else ""),
    ]
