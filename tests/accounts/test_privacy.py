"""The raw login name is stored nowhere and logged nowhere."""

from __future__ import annotations

import logging

import httpx
import pytest
import structlog
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.accounts.helpers import PASSWORD, bearer, log_in, register
from tests.scaling_servers import redis_keys

PHONE = "13812345678"
FORMS = (PHONE, "+86" + PHONE, "138 1234 5678", "138-1234-5678")


async def test_raw_phone_number_is_stored_and_logged_nowhere(
    client: httpx.AsyncClient,
    db: AsyncSession,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        user = await register(client, login=PHONE)
        await client.post(
            "/v1/app/register",
            json={"login": PHONE, "password": PASSWORD, "display_name": "Again"},
        )
        await client.post(
            "/v1/app/register", json={"login": PHONE, "password": "x", "display_name": "A"}
        )
        await log_in(client, "+86 138-1234-5678")
        await log_in(client, PHONE, "wrong password")
        owner = await register(client)
        organisation = await client.post(
            "/v1/app/organisations", json={"name": "Shop"}, headers=bearer(owner.access_token)
        )
        await client.post(
            f"/v1/app/organisations/{organisation.json()['organisation_id']}/members",
            json={"login": PHONE, "role": "member"},
            headers=bearer(owner.access_token),
        )
        for _ in range(6):
            await log_in(client, PHONE, "wrong password")  # ends throttled

    tables = ("users", "participants", "refresh_tokens", "organisations", "organisation_members")
    for table in tables:
        rows = (await db.execute(text(f"SELECT t::text FROM {table} t"))).scalars().all()
        assert rows, table
        for row in rows:
            for form in FORMS:
                assert form.replace(" ", "").replace("-", "") not in row, table
    users = (await db.execute(text("SELECT t::text FROM users t"))).scalars().all()
    assert any(str(user.user_id) in row for row in users)

    stored_keys = await redis_keys(redis, "*")
    logged = repr(events) + caplog.text + capsys.readouterr().out
    for form in FORMS:
        assert form not in logged
        assert not any(form in key for key in stored_keys)
