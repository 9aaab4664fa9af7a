"""`/readyz`: ready when PostgreSQL answers and the database is at or ahead of the code's
migration head; Redis down is `degraded`, still 200; behind or PostgreSQL down is 503.

The database's revision is really changed (and put back): readiness reads it on its own
connection, outside any test transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import create_engine
from service.migrations import CodeMigrations, code_migrations, migration_state

FUTURE_REVISION = "20991231_0001"  # a newer release's expand step, unknown to this code


@contextlib.asynccontextmanager
async def database_at(engine: AsyncEngine, revision: str) -> AsyncIterator[None]:
    async with engine.begin() as conn:
        before = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
        await conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    try:
        yield
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": before})


@contextlib.asynccontextmanager
async def swapped(app: FastAPI, name: str, replacement: object) -> AsyncIterator[None]:
    """One piece of the app's infrastructure replaced for the block (the dependencies read
    `app.state` per request); starlette's State does not suit `monkeypatch`."""
    original = getattr(app.state, name)
    setattr(app.state, name, replacement)
    try:
        yield
    finally:
        setattr(app.state, name, original)


def _previous_revision() -> str:
    from alembic.script import ScriptDirectory

    from service.migrations import alembic_config

    script = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
    (head,) = script.get_heads()
    down = script.get_revision(head).down_revision
    assert isinstance(down, str)
    return down


async def test_ready_at_head(client: httpx.AsyncClient) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready",
        "checks": {
            "migrations": "current",
            "postgresql": "ok",
            "redis": "ok",
            "methodologies": "ok",
        },
    }


async def test_ready_when_the_database_is_a_migration_ahead(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    # The rollout: the new release migrates (expand), then its processes start; the old
    # ones must stay in service meanwhile.
    async with database_at(engine, FUTURE_REVISION):
        ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    assert ready.json()["checks"]["migrations"] == "ahead"


async def test_not_ready_when_the_database_is_behind(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    async with database_at(engine, _previous_revision()):
        ready = await client.get("/readyz")
    assert ready.status_code == 503, ready.text
    assert ready.headers["content-type"].startswith("application/problem+json")
    assert ready.json()["checks"]["migrations"] == "behind"


async def test_redis_down_is_degraded_not_unready(client: httpx.AsyncClient, app: FastAPI) -> None:
    # Nothing listens on port 1: every command fails at once, as with Redis stopped.
    broken = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    async with swapped(app, "redis", broken):
        ready = await client.get("/readyz")
    await broken.aclose()
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"].startswith("unavailable:")
    assert body["checks"]["postgresql"] == "ok"
    assert body["checks"]["migrations"] == "current"


async def test_postgresql_down_is_not_ready(client: httpx.AsyncClient, app: FastAPI) -> None:
    unreachable = create_engine("postgresql://postgres@127.0.0.1:1/nothing", pool_size=1)
    async with swapped(app, "engine", unreachable):
        ready = await client.get("/readyz")
    await unreachable.dispose()
    assert ready.status_code == 503, ready.text
    checks = ready.json()["checks"]
    assert checks["postgresql"].startswith("unavailable:")
    assert checks["migrations"] == "unknown"


@pytest.mark.parametrize(
    ("database", "state"),
    [
        ({"c"}, "current"),
        ({"d"}, "ahead"),  # a revision this code does not ship: a newer release's
        ({"b"}, "behind"),
        (set(), "behind"),  # never migrated
        ({"c", "d"}, "ahead"),
        ({"b", "d"}, "behind"),
    ],
)
def test_migration_state(database: set[str], state: str) -> None:
    shipped = CodeMigrations(heads=frozenset({"c"}), known=frozenset({"a", "b", "c"}))
    assert migration_state(frozenset(database), shipped) == state


def test_the_code_knows_its_own_heads() -> None:
    shipped = code_migrations()
    assert shipped.heads <= shipped.known
    assert _previous_revision() in shipped.known
