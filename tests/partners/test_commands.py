"""`carbon-points partners …`: the commands in a session, and a refusal as one clean line."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.cli import build_parser
from service.cli import main as cli_main
from service.partners import commands
from service.partners.errors import UnknownKeyError

PARTNER_KEY = "test-partner-key"


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["partners", *argv])


async def _run(session: AsyncSession, *argv: str) -> list[str]:
    return await commands.administer(
        session,
        _args(*argv),
        partner_key=PARTNER_KEY,
        pepper="test-pepper",
        validity=timedelta(days=365),
        now=datetime.now(UTC),
    )


def test_the_partners_command_is_wired() -> None:
    args = _args("rotate-key", "pk_1", "--overlap-hours", "2")
    assert args.handler is commands.run
    assert (args.key_id, args.overlap_hours) == ("pk_1", 2)


async def test_create_list_issue_and_revoke(db: AsyncSession) -> None:
    created = await _run(
        db, "create", "metro-x", "--name", "Metro X", "--kind", "transit",
        "--action-types", "transit.metro,transit.bus",
    )  # fmt: skip
    assert created[0].startswith("partner metro-x (")
    assert created[1].startswith("key id: pk_") and created[2].startswith("secret: cpsk_")
    assert await _run(db, "list") == ["metro-x\ttransit\tactive\ttransit.bus,transit.metro"]
    issued = await _run(db, "issue-key", "metro-x")
    key_id = issued[0].removeprefix("key id: ")
    assert await _run(db, "revoke-key", key_id) == [f"{key_id} revoked"]
    assert await _run(db, "revoke-key", key_id) == [f"{key_id} revoked"]  # idempotent
    with pytest.raises(UnknownKeyError):
        await _run(db, "revoke-key", "pk_nothing")


async def test_a_refusal_is_one_line_without_a_stack_trace(
    committed: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    url = committed.url.render_as_string(hide_password=False).replace("+asyncpg", "")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # these commands need no Redis
    monkeypatch.setenv("CARBON_POINTS_DATA_DIR", str(tmp_path))
    from service.config import get_settings

    get_settings.cache_clear()
    create = ["partners", "create", "bikes", "--name", "Bikes", "--kind", "bikeshare"]
    create += ["--action-types", "bikeshare.ride"]
    try:
        assert await asyncio.to_thread(cli_main, create) == 0
        capsys.readouterr()
        assert await asyncio.to_thread(cli_main, create) == 1
        err = capsys.readouterr().err
        assert err == "error: a partner with code 'bikes' exists\n"
        assert await asyncio.to_thread(cli_main, ["partners", "revoke-key", "pk_none"]) == 1
        assert capsys.readouterr().err == "error: no key pk_none\n"
    finally:
        get_settings.cache_clear()
