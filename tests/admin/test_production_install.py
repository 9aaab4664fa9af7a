"""A production install credits: the library is filed by `db upgrade`, `seed` refuses in
production, and /readyz says when a partner's action type has no methodology in force."""

from __future__ import annotations

import argparse
import asyncio

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from service import cli
from service.config import Settings
from service.methodologies.service import library_sources
from service.models import MethodologyVersion
from tests.crediting.conftest import Live


def test_seed_refuses_in_production(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(environment="production")
    assert cli.cmd_seed(argparse.Namespace(), settings) == 1
    assert "never runs with CARBON_POINTS_ENVIRONMENT=production" in capsys.readouterr().err


async def test_db_upgrade_files_the_library(
    test_settings: Settings, committed: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert test_settings.database_url and test_settings.redis_url
    monkeypatch.setenv("DATABASE_URL", test_settings.database_url)
    monkeypatch.setenv("REDIS_URL", test_settings.redis_url)
    args = cli.build_parser().parse_args(["db", "upgrade"])
    assert await asyncio.to_thread(cli.cmd_db, args, test_settings) == 0
    async with committed.connect() as conn:
        filed = await conn.scalar(select(func.count()).select_from(MethodologyVersion))
    assert filed == len(library_sources())


async def test_readyz_names_action_types_without_a_methodology(
    live: Live, committed: AsyncEngine
) -> None:
    async with httpx.AsyncClient(transport=live.transport, base_url="http://test") as http:
        await live.partner("metro-co", ("transit.metro",))
        live.app.state.registry_cache.invalidate()
        assert (await http.get("/readyz")).status_code == 200
        await live.partner("ferry-co", ("transit.ferry", "transit.bus"))
        ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["methodologies"] == "none in force for transit.ferry@*"
