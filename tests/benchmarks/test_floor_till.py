"""Smoke test of the till benchmark's floor (benchmarks/floor_till.py), over ASGI.

On its own small schema in its own database: a merchant key, a customer with points and
single-use codes. Authorise holds the points once (a code works once; a retry with the same
Idempotency-Key replays; the same key with another body is refused; not enough points is
refused and holds nothing); capture moves the held points once (a replay changes nothing, a
second capture is refused) into the merchant's settlement shards. A bad merchant key is 401.
Each request is one transaction of two statements.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from benchmarks.floor_till import Config, create_app, create_schema, token_hash
from service.embedded import to_asyncpg_dsn
from tests.conftest import TEST_DATABASE, drop_database, recreate_database

MERCHANT = uuid.uuid4()
CUSTOMER = uuid.uuid4()
SECRET = secrets.token_urlsafe(24)
KEY = f"cpmk_mk_floor1_{SECRET}"


@pytest.fixture
async def dsn(server_url: str) -> AsyncIterator[str]:
    name = f"{TEST_DATABASE}_till_floor"
    url = to_asyncpg_dsn(await recreate_database(server_url, name))
    await create_schema(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO till_keys (key_id, merchant_id, secret_hash) VALUES ($1, $2, $3)",
            "mk_floor1",
            MERCHANT,
            hashlib.sha256(SECRET.encode()).digest(),
        )
        await conn.execute("INSERT INTO till_customers (id, posted) VALUES ($1, 1000)", CUSTOMER)
        expires = datetime.now(UTC) + timedelta(minutes=2)
        await conn.executemany(
            "INSERT INTO till_tokens (token_hash, customer_id, expires_at) VALUES ($1, $2, $3)",
            [(token_hash(f"rt_code{i:04d}"), CUSTOMER, expires) for i in range(3)],
        )
    finally:
        await conn.close()
    yield url
    await drop_database(server_url, name)


@pytest.fixture
async def floor(dsn: str) -> AsyncIterator[FastAPI]:
    application = create_app(Config(dsn, pool=2))
    async with application.router.lifespan_context(application):
        yield application


async def test_floor_till_holds_and_captures_once(floor: FastAPI, dsn: str) -> None:
    transport = httpx.ASGITransport(app=floor)
    async with httpx.AsyncClient(transport=transport, base_url="http://floor") as http:

        async def post(path: str, body: object, key: str, token: str = KEY) -> httpx.Response:
            headers = {"authorization": f"Bearer {token}", "idempotency-key": key}
            return await http.post(path, json=body, headers=headers)

        sale = {"redemption_token": "rt_code0000", "points": 300}
        authorised = await post("/v1/merchant/redemptions", sale, "a-1")
        assert authorised.status_code == 201, authorised.text
        held = authorised.json()
        assert (held["status"], held["points_authorised"]) == ("authorised", 300)
        replay = await post("/v1/merchant/redemptions", sale, "a-1")
        assert replay.status_code == 201
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == held
        reused = await post("/v1/merchant/redemptions", {**sale, "points": 5}, "a-1")
        assert reused.status_code == 422
        used = await post("/v1/merchant/redemptions", sale, "a-2")
        assert used.json()["type"].endswith("redemption-token-invalid")
        too_much = {"redemption_token": "rt_code0001", "points": 701}
        assert (await post("/v1/merchant/redemptions", too_much, "a-3")).status_code == 422
        bad_key = await post("/v1/merchant/redemptions", sale, "a-4", token=KEY + "x")
        assert bad_key.status_code == 401

        capture = f"/v1/merchant/redemptions/{held['id']}/capture"
        captured = await post(capture, {}, "c-1")
        assert captured.status_code == 200, captured.text
        assert (captured.json()["status"], captured.json()["points_captured"]) == ("captured", 300)
        assert (await post(capture, {}, "c-1")).json() == captured.json()
        assert (await post(capture, {}, "c-2")).status_code == 409
        missing = f"/v1/merchant/redemptions/{uuid.uuid4()}/capture"
        assert (await post(missing, {}, "c-3")).status_code == 404

        # The code the refused sale did not consume still works.
        again = await post("/v1/merchant/redemptions", {**too_much, "points": 700}, "a-5")
        assert again.status_code == 201

    conn = await asyncpg.connect(dsn)
    try:
        customer = await conn.fetchrow("SELECT posted, held FROM till_customers")
        assert (customer["posted"], customer["held"]) == (700, 700)
        assert await conn.fetchval("SELECT sum(points) FROM till_settlement") == 300
        captures = await conn.fetchval(
            "SELECT count(*) FROM till_redemptions WHERE captured_at IS NOT NULL"
        )
        assert captures == 1
    finally:
        await conn.close()
    stats = floor.state.floor.stats
    # Claim + work, or claim + the lookup behind a replay, a reused key or a bad merchant key.
    assert stats.statements == {op: 2 * n for op, n in stats.requests.items()}
