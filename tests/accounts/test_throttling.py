"""Login throttling: per account and per address, 429 with Retry-After; fail-open."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
import structlog
from fastapi import FastAPI
from redis.asyncio import Redis

from tests.accounts.helpers import log_in, register, unique_phone
from tests.scaling_servers import redis_keys

PROBLEMS = "https://carbon-points.dev/problems/"


async def test_per_account(
    client: httpx.AsyncClient, client_at: Callable[[str], httpx.AsyncClient]
) -> None:
    user = await register(client)
    neighbour = await register(client)
    async with client_at("10.1.0.1") as first, client_at("10.1.0.2") as second:
        for attempt in range(5):
            wrong = await log_in(first if attempt % 2 else second, user.login, "wrong password")
            assert wrong.status_code == 401
        # The right password no longer helps, from any address.
        throttled = await log_in(first, user.login)
        assert throttled.status_code == 429
        body = throttled.json()
        assert body["type"] == PROBLEMS + "login-throttled"
        retry_after = int(throttled.headers["retry-after"])
        assert 0 < retry_after <= 15 * 60
        assert body["retry_after"] == retry_after
        # Another account from the same address is not affected.
        assert (await log_in(first, neighbour.login)).status_code == 200


async def test_success_clears_the_account_count(client: httpx.AsyncClient) -> None:
    user = await register(client)
    for _ in range(4):
        assert (await log_in(client, user.login, "wrong password")).status_code == 401
    assert (await log_in(client, user.login)).status_code == 200
    for _ in range(4):
        assert (await log_in(client, user.login, "wrong password")).status_code == 401
    assert (await log_in(client, user.login)).status_code == 200


async def test_per_address(
    client: httpx.AsyncClient, client_at: Callable[[str], httpx.AsyncClient]
) -> None:
    user = await register(client)
    async with client_at("10.2.0.1") as attacker, client_at("10.2.0.2") as elsewhere:
        for _ in range(20):
            assert (await log_in(attacker, unique_phone(), "guess")).status_code == 401
        throttled = await log_in(attacker, user.login)
        assert throttled.status_code == 429
        assert throttled.json()["type"] == PROBLEMS + "login-throttled"
        assert int(throttled.headers["retry-after"]) > 0
        assert (await log_in(elsewhere, user.login)).status_code == 200


async def test_counts_live_in_redis_with_a_window(client: httpx.AsyncClient, redis: Redis) -> None:
    user = await register(client)
    await log_in(client, user.login, "wrong password")
    keys = await redis_keys(redis, "cp:{login-*")
    assert len(keys) == 2
    for key in keys:
        assert 0 < await redis.ttl(key) <= 15 * 60
    assert not any(user.login in key for key in keys)


@pytest.fixture
def redis_down(app: FastAPI) -> Iterator[None]:
    """The app's Redis replaced by one nobody answers at, for one test."""
    saved = app.state.redis
    app.state.redis = Redis.from_url(
        "redis://127.0.0.1:1/0", socket_connect_timeout=0.2, socket_timeout=0.2
    )
    yield
    app.state.redis = saved


async def test_fails_open_when_redis_is_unreachable(
    client: httpx.AsyncClient, redis_down: None
) -> None:
    user = await register(client)
    with structlog.testing.capture_logs() as logs:
        for _ in range(7):
            assert (await log_in(client, user.login, "wrong password")).status_code == 401
        assert (await log_in(client, user.login)).status_code == 200
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings
    assert all("throttle unavailable" in e["event"] for e in warnings)
    assert user.login not in repr(logs)
