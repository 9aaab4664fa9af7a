"""Helpers for any test that needs a signed-in app user.

    from tests.accounts.helpers import bearer, register_and_login

    user_id, participant_id, token = await register_and_login(client)
    response = await client.get("/v1/app/me", headers=bearer(token))

Users are made through the real endpoints, so their tokens pass `CurrentUser`
exactly as a phone's would.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

import httpx

PASSWORD = "correct horse battery staple"


def unique_phone() -> str:
    """A fresh mainland mobile number (11 digits, 1[3-9]...)."""
    return f"1{secrets.choice('3456789')}{secrets.randbelow(10**9):09d}"


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


@dataclass(frozen=True)
class Registered:
    user_id: uuid.UUID
    participant_id: uuid.UUID
    access_token: str
    refresh_token: str
    login: str
    password: str


async def register(
    client: httpx.AsyncClient,
    *,
    login: str | None = None,
    password: str = PASSWORD,
    display_name: str = "Test citizen",
    region: str | None = "CN-JX",
) -> Registered:
    """Register a citizen (201 expected); its first tokens come with it."""
    login = login or unique_phone()
    body = {"login": login, "password": password, "display_name": display_name}
    if region is not None:
        body["region"] = region
    response = await client.post("/v1/app/register", json=body)
    assert response.status_code == 201, response.text
    data = response.json()
    return Registered(
        uuid.UUID(data["user_id"]),
        uuid.UUID(data["participant_id"]),
        data["access_token"],
        data["refresh_token"],
        login,
        password,
    )


async def log_in(client: httpx.AsyncClient, login: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/v1/app/login", json={"login": login, "password": password})


async def register_and_login(
    client: httpx.AsyncClient, *, login: str | None = None, display_name: str = "Test citizen"
) -> tuple[uuid.UUID, uuid.UUID, str]:
    """(user id, participant id, access token) of a new citizen, signed in by /login."""
    user = await register(client, login=login, display_name=display_name)
    response = await log_in(client, user.login, user.password)
    assert response.status_code == 200, response.text
    return user.user_id, user.participant_id, response.json()["access_token"]
