"""Rotating refresh tokens with reuse detection; logout and logout everywhere."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.accounts.tokens import refresh_token_hash
from service.db import create_sessionmaker
from service.models import RefreshToken
from tests.accounts.helpers import bearer, log_in, register

PROBLEMS = "https://carbon-points.dev/problems/"


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/v1/app/token/refresh", json={"refresh_token": token})


def _slug(response: httpx.Response) -> str:
    return str(response.json()["type"]).removeprefix(PROBLEMS)


async def test_refresh_rotates(client: httpx.AsyncClient, db: AsyncSession) -> None:
    user = await register(client)
    first = await _refresh(client, user.refresh_token)
    assert first.status_code == 200, first.text
    pair = first.json()
    assert pair["refresh_token"] != user.refresh_token
    assert pair["access_token"] != user.access_token
    assert pair["user_id"] == str(user.user_id)
    me = await client.get("/v1/app/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200

    second = await _refresh(client, pair["refresh_token"])
    assert second.status_code == 200, second.text

    rows = (
        await db.execute(select(RefreshToken).where(RefreshToken.user_id == user.user_id))
    ).scalars()
    tokens = sorted(rows, key=lambda row: row.id)
    assert len(tokens) == 3 and len({t.family_id for t in tokens}) == 1
    assert [t.used_at is not None for t in tokens] == [True, True, False]
    # Only hashes are stored.
    assert tokens[0].token_hash == refresh_token_hash(user.refresh_token)


async def test_reusing_a_refresh_token_revokes_its_family(client: httpx.AsyncClient) -> None:
    user = await register(client)
    other_session = (await log_in(client, user.login)).json()
    newest = (await _refresh(client, user.refresh_token)).json()["refresh_token"]

    reused = await _refresh(client, user.refresh_token)
    assert reused.status_code == 401
    assert _slug(reused) == "refresh-token-reused"
    # The thief's (or the victim's) newest token of that family is dead too...
    after = await _refresh(client, newest)
    assert after.status_code == 401
    assert _slug(after) == "refresh-token-invalid"
    # ... while the user's other session (another family) carries on.
    assert (await _refresh(client, other_session["refresh_token"])).status_code == 200


async def test_reuse_revocation_is_committed(
    live_client: httpx.AsyncClient, committed: AsyncEngine
) -> None:
    """The reuse response is an error, yet the revocation it causes must be committed."""
    user = await register(live_client)
    newest = (await _refresh(live_client, user.refresh_token)).json()["refresh_token"]
    assert _slug(await _refresh(live_client, user.refresh_token)) == "refresh-token-reused"

    async with create_sessionmaker(committed)() as session:
        revoked = (
            await session.execute(
                select(RefreshToken.revoked_at).where(RefreshToken.user_id == user.user_id)
            )
        ).scalars()
        assert all(at is not None for at in revoked)
    assert _slug(await _refresh(live_client, newest)) == "refresh-token-invalid"


async def test_concurrent_use_of_one_refresh_token_rotates_once(
    live_client: httpx.AsyncClient,
) -> None:
    user = await register(live_client)
    responses = await asyncio.gather(*(_refresh(live_client, user.refresh_token) for _ in range(5)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 401, 401, 401, 401]
    winner = next(r for r in responses if r.status_code == 200).json()
    # Concurrent reuse is reuse: the family, winner included, is revoked.
    assert (await _refresh(live_client, winner["refresh_token"])).status_code == 401


async def test_unknown_and_expired_refresh_tokens(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    assert _slug(await _refresh(client, "cprt_nope")) == "refresh-token-invalid"
    user = await register(client)
    row = await db.scalar(
        select(RefreshToken).where(
            RefreshToken.token_hash == refresh_token_hash(user.refresh_token)
        )
    )
    assert row is not None
    row.expires_at = row.issued_at
    await db.flush()
    assert _slug(await _refresh(client, user.refresh_token)) == "refresh-token-invalid"


async def test_logout_revokes_this_session_only(client: httpx.AsyncClient) -> None:
    user = await register(client)
    phone = (await log_in(client, user.login)).json()

    response = await client.post("/v1/app/logout", json={"refresh_token": user.refresh_token})
    assert response.status_code == 204
    assert _slug(await _refresh(client, user.refresh_token)) == "refresh-token-invalid"
    # Logging out twice, or with an unknown token, is fine.
    again = await client.post("/v1/app/logout", json={"refresh_token": user.refresh_token})
    assert again.status_code == 204
    unknown = await client.post("/v1/app/logout", json={"refresh_token": "cprt_unknown"})
    assert unknown.status_code == 204
    assert (await _refresh(client, phone["refresh_token"])).status_code == 200


async def test_logout_everywhere(client: httpx.AsyncClient) -> None:
    user = await register(client)
    tablet = (await log_in(client, user.login)).json()
    bystander = await register(client)

    response = await client.post("/v1/app/logout-everywhere", headers=bearer(user.access_token))
    assert response.status_code == 204

    for access in (user.access_token, tablet["access_token"]):
        me = await client.get("/v1/app/me", headers=bearer(access))
        assert me.status_code == 401
        assert _slug(me) == "token-invalid"
    for refresh in (user.refresh_token, tablet["refresh_token"]):
        assert _slug(await _refresh(client, refresh)) == "refresh-token-invalid"

    # Signing in again works, and nobody else was logged out.
    fresh = (await log_in(client, user.login)).json()
    assert (
        await client.get("/v1/app/me", headers=bearer(fresh["access_token"]))
    ).status_code == 200
    assert (await _refresh(client, fresh["refresh_token"])).status_code == 200
    me = await client.get("/v1/app/me", headers=bearer(bystander.access_token))
    assert me.status_code == 200
    assert (await _refresh(client, bystander.refresh_token)).status_code == 200


async def test_logout_everywhere_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/app/logout-everywhere")
    assert response.status_code == 401
    assert _slug(response) == "token-missing"
