"""`carbon-points partners …`: the commands in a session, and a refusal as one clean line."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.cli import build_parser
from service.cli import main as cli_main
from service.command_runtime import Output
from service.partners import commands
from service.partners.errors import UnknownKeyError

PARTNER_KEY = "test-partner-key"


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["partners", *argv])


async def _run(session: AsyncSession, *argv: str) -> list[str]:
    return (await _output(session, *argv)).lines  # type: ignore[return-value]


async def _output(session: AsyncSession, *argv: str) -> Output:
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
        out, err = capsys.readouterr()
        # Nothing on stdout; on stderr the log lines (JSON) and the one `error:` line.
        assert out == ""
        assert err.endswith("\nerror: a partner with code 'bikes' exists\n")
        assert "Traceback" not in err
        assert await asyncio.to_thread(cli_main, ["partners", "revoke-key", "pk_none"]) == 1
        assert capsys.readouterr().err.splitlines()[-1] == "error: no key pk_none"
    finally:
        get_settings.cache_clear()


async def test_json_results_on_stdout_and_logs_on_stderr(
    committed: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    url = committed.url.render_as_string(hide_password=False).replace("+asyncpg", "")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("CARBON_POINTS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CARBON_POINTS_LOG_LEVEL", "INFO")
    from service.config import get_settings

    get_settings.cache_clear()
    create = ["partners", "create", "buses", "--name", "公交集团", "--kind", "transit"]
    create += ["--action-types", "transit.bus", "--json"]
    try:
        assert await asyncio.to_thread(cli_main, create) == 0
        out, err = capsys.readouterr()
        created = json.loads(out)
        assert created["partner"]["code"] == "buses"
        assert created["partner"]["name"] == "公交集团"
        assert created["key"]["secret"].startswith("cpsk_")
        # The command's log lines went to stderr, every one a JSON object.
        logged = [json.loads(line) for line in err.splitlines()]
        assert any(entry["event"] == "servers" for entry in logged)

        assert await asyncio.to_thread(cli_main, ["partners", "list", "--json"]) == 0
        out, err = capsys.readouterr()
        assert json.loads(out) == [
            {
                "id": created["partner"]["id"],
                "code": "buses",
                "name": "公交集团",
                "kind": "transit",
                "status": "active",
                "action_types": ["transit.bus"],
                "region": None,
                "rate_limit_per_second": 2000,
            }
        ]
        assert "servers" in err

        # Without --json: the same listing, one tab-separated line a partner, no log lines.
        assert await asyncio.to_thread(cli_main, ["partners", "list"]) == 0
        assert capsys.readouterr().out == "buses\ttransit\tactive\ttransit.bus\n"
    finally:
        get_settings.cache_clear()


async def test_admin_listings_print_json_on_stdout(
    committed: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """`methodology sync|versions --json` and `audit verify --json`: one JSON document on
    stdout, whatever the log level (issue 17, the admin commands)."""
    url = committed.url.render_as_string(hide_password=False).replace("+asyncpg", "")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("CARBON_POINTS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CARBON_POINTS_LOG_LEVEL", "INFO")
    from service.config import get_settings

    get_settings.cache_clear()
    try:
        assert await asyncio.to_thread(cli_main, ["methodology", "sync", "--json"]) == 0
        synced = json.loads(capsys.readouterr().out)
        assert synced["done"] and "shipped methodologies" in synced["done"][0]
        assert await asyncio.to_thread(cli_main, ["methodology", "versions", "--json"]) == 0
        versions = json.loads(capsys.readouterr().out)
        assert any(v["methodology_id"] == "transit.metro" for v in versions)
        assert all({"version", "action_type", "effective_from"} <= set(v) for v in versions)
        assert await asyncio.to_thread(cli_main, ["audit", "verify", "--json"]) == 0
        verified = json.loads(capsys.readouterr().out)
        assert verified["ok"] is True and verified["problems"] == []
    finally:
        get_settings.cache_clear()
