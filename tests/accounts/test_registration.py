"""Registration, login and /me; what a failed login does and does not reveal."""

from __future__ import annotations

import uuid

import httpx
from argon2 import PasswordHasher
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.accounts.passwords import PASSWORDS
from service.models import Participant, User
from tests.accounts.helpers import PASSWORD, bearer, log_in, register, register_and_login

PROBLEMS = "https://carbon-points.dev/problems/"


async def test_register_login_me(client: httpx.AsyncClient, db: AsyncSession) -> None:
    response = await client.post(
        "/v1/app/register",
        json={
            "login": "13912345678",
            "password": PASSWORD,
            "display_name": " 小明 ",
            "region": "CN-JX",
        },
    )
    assert response.status_code == 201, response.text
    registered = response.json()
    assert registered["token_type"] == "Bearer"
    assert registered["expires_in"] == 600
    assert registered["refresh_expires_in"] == 30 * 24 * 3600
    assert registered["refresh_token"].startswith("cprt_")

    participant = await db.get(Participant, uuid.UUID(registered["participant_id"]))
    assert participant is not None
    assert (participant.kind, participant.display_name) == ("citizen", "小明")
    user = await db.get(User, uuid.UUID(registered["user_id"]))
    assert user is not None and user.password_hash is not None
    assert user.password_hash.startswith("$argon2id$")

    # The same number, written another way, signs in.
    logged_in = await log_in(client, "+86 139-1234-5678")
    assert logged_in.status_code == 200, logged_in.text
    me = await client.get("/v1/app/me", headers=bearer(logged_in.json()["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json() == {
        "user_id": registered["user_id"],
        "participant_id": registered["participant_id"],
        "display_name": "小明",
        "region": "CN-JX",
        "created_at": me.json()["created_at"],
        "organisations": [],
    }
    assert "login" not in me.text and "13912345678" not in me.text


async def test_email_login_is_case_insensitive(client: httpx.AsyncClient) -> None:
    await register(client, login="Xiao.Ming@Example.COM")
    response = await log_in(client, "xiao.ming@example.com")
    assert response.status_code == 200, response.text


async def test_register_and_login_helper(client: httpx.AsyncClient) -> None:
    user_id, participant_id, token = await register_and_login(client)
    me = await client.get("/v1/app/me", headers=bearer(token))
    assert me.json()["user_id"] == str(user_id)
    assert me.json()["participant_id"] == str(participant_id)


async def test_wrong_password_and_unknown_login_look_the_same(client: httpx.AsyncClient) -> None:
    user = await register(client)
    wrong = await log_in(client, user.login, "not the password")
    unknown = await log_in(client, "13000000000", PASSWORD)
    nonsense = await log_in(client, "not a login name", PASSWORD)
    for response in (wrong, unknown, nonsense):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        body.pop("request_id")
        # The app API speaks zh-CN unless asked otherwise (tests/foundation/test_languages.py).
        assert response.headers["content-language"] == "zh-CN"
        assert body == {
            "type": PROBLEMS + "invalid-credentials",
            "title": "登录名或密码错误",
            "status": 401,
            "detail": "登录名或密码错误",
        }


async def test_duplicate_registration_is_409_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await register(client, login="13712345678")
    participants = await db.scalar(select(func.count()).select_from(Participant))
    response = await client.post(
        "/v1/app/register",
        json={"login": "+8613712345678", "password": "another password", "display_name": "X"},
    )
    assert response.status_code == 409
    assert response.json()["type"] == PROBLEMS + "login-taken"
    assert await db.scalar(select(func.count()).select_from(Participant)) == participants
    # The first registration is untouched.
    assert (await log_in(client, user.login)).status_code == 200


async def test_bad_registrations_are_422_without_echo(client: httpx.AsyncClient) -> None:
    cases = [
        {"login": "12345", "password": PASSWORD, "display_name": "A"},
        {"login": "someone@", "password": PASSWORD, "display_name": "A"},
        {"login": "13812345678", "password": "short", "display_name": "A"},
        {"login": "13812345678", "password": PASSWORD, "display_name": "   "},
        {"login": "13812345678", "password": PASSWORD, "display_name": "A", "region": "jx"},
        {"login": "13812345678", "password": PASSWORD, "display_name": "A", "extra": 1},
    ]
    for body in cases:
        response = await client.post("/v1/app/register", json=body)
        assert response.status_code == 422, body
        assert response.json()["type"] == PROBLEMS + "validation-error"
        assert "12345" not in response.text and "someone@" not in response.text


async def test_login_rehashes_a_password_hashed_with_old_parameters(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await register(client)
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(user.password)
    row = await db.get(User, user.user_id)
    assert row is not None
    row.password_hash = old
    await db.flush()
    assert PASSWORDS.needs_rehash(old)

    assert (await log_in(client, user.login)).status_code == 200
    await db.refresh(row)
    assert row.password_hash != old
    assert row.password_hash is not None and not PASSWORDS.needs_rehash(row.password_hash)
    assert (await log_in(client, user.login)).status_code == 200


async def test_me_needs_a_bearer_token(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        response = await client.get("/v1/app/me", headers=headers)
        assert response.status_code == 401
        assert response.json()["type"] == PROBLEMS + "token-missing"
        assert response.headers["www-authenticate"].startswith("Bearer")
