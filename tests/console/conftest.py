"""Console tests: administrators made through the service, logged in through the console's
own login form (password and a TOTP code computed from their derived secret)."""

from __future__ import annotations

import re
import secrets as random_secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from service.admin import service as admins
from service.admin import totp
from service.db import _read_session as get_read_session
from service.db import get_session, get_streaming_session
from service.models import Admin
from tests.crediting.conftest import live

__all__ = ["live"]  # the crediting tests' fixture: the real app, committing

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Enrolled:
    admin: Admin
    secret: str

    def code(self, moment: datetime | None = None) -> str:
        return totp.code_at(self.secret, moment or datetime.now(UTC))


async def enrol(
    app: FastAPI, session: AsyncSession, *roles: str, login: str | None = None
) -> Enrolled:
    server_key = app.state.secrets.partner_secret_key
    enrolled = await admins._enrol(
        session,
        server_key,
        login=login or f"console-{random_secrets.token_hex(4)}",
        display_name="Console tester",
        password=PASSWORD,
        roles=list(roles),
    )
    admin = enrolled.admin
    return Enrolled(admin, totp.derive_secret(server_key, admin.id, admin.totp_salt))


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


async def log_in(
    client: httpx.AsyncClient, who: Enrolled, *, step_offset: int = 0
) -> httpx.Response:
    """The console's login form, filled in as a browser would; returns the POST's answer."""
    page = await client.get("/admin/login")
    assert page.status_code == 200
    code = who.code(datetime.now(UTC) + timedelta(seconds=30 * step_offset))
    return await client.post(
        "/admin/login",
        data={
            "csrf_token": csrf_of(page.text),
            "login": who.admin.login,
            "password": PASSWORD,
            "totp": code,
            "next": "/admin",
        },
    )


@pytest.fixture
async def browser(app: FastAPI, db: AsyncSession, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ASGI as a browser on HTTPS sees it (Secure cookies are sent back), its
    request sessions joined to the test's rolled-back transaction."""

    async def test_session() -> AsyncIterator[AsyncSession]:
        yield db
        await db.flush()

    app.dependency_overrides[get_session] = test_session
    app.dependency_overrides[get_streaming_session] = test_session
    app.dependency_overrides[get_read_session] = test_session
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as http:
        yield http
    app.dependency_overrides.clear()
