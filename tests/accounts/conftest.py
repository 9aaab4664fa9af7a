"""Accounts tests: the `client` fixture (rolled back) for most, `live_client` (committing,
the real session dependency) where the commit itself is what is tested."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service.accounts.tokens import Keyring


@pytest.fixture
def set_keyring(app: FastAPI) -> Iterator[Callable[[Keyring], None]]:
    """Replace the app's JWT keyring for one test; the configured one comes back after."""

    def replace(keyring: Keyring) -> None:
        app.state.jwt_keyring = keyring

    saved = getattr(app.state, "jwt_keyring", None)
    yield replace
    app.state.jwt_keyring = saved


@pytest.fixture
def client_at(app: FastAPI, client: httpx.AsyncClient) -> Callable[[str], httpx.AsyncClient]:
    """Clients from other addresses, sharing `client`'s rolled-back session."""

    def make(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(
            app=app, raise_app_exceptions=False, client=(address, 40000)
        )
        return httpx.AsyncClient(transport=transport, base_url="http://test")

    return make


@pytest.fixture
async def live_client(
    app: FastAPI, committed: AsyncEngine, redis: Redis
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
