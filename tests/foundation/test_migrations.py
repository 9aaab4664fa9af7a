"""Migrations go up, down and up again, and match the models exactly."""

from __future__ import annotations

import asyncio
import os

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from service import migrations
from service.db import create_engine
from service.models import Base
from tests.conftest import drop_database, recreate_database


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    return set(names) - {"alembic_version"}


async def test_upgrade_downgrade_upgrade(server_url: str) -> None:
    name = f"carbon_points_migrations_{os.getpid()}"
    url = await recreate_database(server_url, name)
    engine = create_engine(url, pool_size=1)
    try:
        await asyncio.to_thread(migrations.upgrade, url)
        assert await _tables(engine) == set(Base.metadata.tables)
        assert await migrations.current_revisions(engine) == migrations.head_revisions()

        await asyncio.to_thread(migrations.downgrade, url, "base")
        assert await _tables(engine) == set()

        await asyncio.to_thread(migrations.upgrade, url)
        assert await _tables(engine) == set(Base.metadata.tables)
    finally:
        await engine.dispose()
        await drop_database(server_url, name)


async def test_models_match_migrations(engine: AsyncEngine) -> None:
    def diff(sync_conn: object) -> list[object]:
        context = MigrationContext.configure(
            sync_conn,  # type: ignore[arg-type]
            opts={"compare_type": True, "compare_server_default": True},
        )
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []
