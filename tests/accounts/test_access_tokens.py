"""Access tokens: anything not signed HS256 by a key in the keyring, unexpired and of
type `access`, is refused; a previous key works until it leaves the keyring."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from service.accounts.dependencies import keyring as app_keyring
from service.accounts.tokens import Keyring, SigningKey, key_id, mint_access_token
from tests.accounts.helpers import Registered, bearer, log_in, register

PROBLEMS = "https://carbon-points.dev/problems/"
OTHER_SECRET = "another-signing-key-that-is-long-enough-for-hs256-0123456789"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(user: Registered, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(user.user_id),
        "pid": str(user.participant_id),
        "gen": 0,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "jti": "test-jti",
        "typ": "access",
    }
    claims.update(changes)
    return claims


def _current(app: FastAPI) -> SigningKey:
    ring = getattr(app.state, "jwt_keyring", None)
    assert isinstance(ring, Keyring)
    return ring.current


async def _status(client: httpx.AsyncClient, token: str) -> tuple[int, str]:
    response = await client.get("/v1/app/me", headers=bearer(token))
    slug = response.json()["type"].removeprefix(PROBLEMS) if response.status_code != 200 else ""
    return response.status_code, slug


@pytest.fixture
async def user(client: httpx.AsyncClient) -> Registered:
    return await register(client)


async def test_a_well_formed_token_is_accepted(
    app: FastAPI, client: httpx.AsyncClient, user: Registered
) -> None:
    key = _current(app)
    token = jwt.encode(_claims(user), key.secret, algorithm="HS256", headers={"kid": key.kid})
    assert await _status(client, token) == (200, "")
    header = jwt.get_unverified_header(user.access_token)
    assert header["alg"] == "HS256" and header["kid"] == key.kid


async def test_expired_token(app: FastAPI, client: httpx.AsyncClient, user: Registered) -> None:
    past = datetime.now(UTC) - timedelta(minutes=11)
    ring = getattr(app.state, "jwt_keyring", None)
    assert isinstance(ring, Keyring)
    token = mint_access_token(
        ring, user_id=user.user_id, participant_id=user.participant_id, generation=0, now=past
    )
    response = await client.get("/v1/app/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["type"] == PROBLEMS + "token-expired"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_tampered_token(app: FastAPI, client: httpx.AsyncClient, user: Registered) -> None:
    header, payload, signature = user.access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["pid"] = str(uuid.uuid4())  # someone else's points account
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    assert await _status(client, forged) == (401, "token-invalid")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert await _status(client, f"{header}.{payload}.{flipped}") == (401, "token-invalid")


async def test_wrongly_signed_token(
    app: FastAPI, client: httpx.AsyncClient, user: Registered
) -> None:
    kid = _current(app).kid
    token = jwt.encode(_claims(user), OTHER_SECRET, algorithm="HS256", headers={"kid": kid})
    assert await _status(client, token) == (401, "token-invalid")


async def test_alg_none(app: FastAPI, client: httpx.AsyncClient, user: Registered) -> None:
    kid = _current(app).kid
    for alg in ("none", "None", "NONE"):
        header = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
        payload = _b64(json.dumps(_claims(user)).encode())
        for token in (f"{header}.{payload}.", f"{header}.{payload}"):
            assert await _status(client, token) == (401, "token-invalid")


async def test_other_algorithms_are_refused_even_with_the_right_secret(
    app: FastAPI, client: httpx.AsyncClient, user: Registered
) -> None:
    key = _current(app)
    for alg in ("HS384", "HS512"):
        token = jwt.encode(_claims(user), key.secret, algorithm=alg, headers={"kid": key.kid})
        assert await _status(client, token) == (401, "token-invalid"), alg
    # Algorithm confusion: an asymmetric header over an HMAC made with the shared secret.
    for alg in ("RS256", "ES256", "PS256", "EdDSA"):
        header = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": key.kid}).encode())
        payload = _b64(json.dumps(_claims(user)).encode())
        signing_input = f"{header}.{payload}".encode()
        mac = jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256).sign(
            signing_input, key.secret.encode()
        )
        assert await _status(client, f"{header}.{payload}.{_b64(mac)}") == (
            401,
            "token-invalid",
        ), alg


async def test_unknown_or_missing_kid(
    app: FastAPI, client: httpx.AsyncClient, user: Registered
) -> None:
    secret = _current(app).secret
    for extra in ({"kid": "k0000000000000000"}, {}, {"kid": 7}, {"kid": None}):
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", **extra}).encode())
        payload = _b64(json.dumps(_claims(user)).encode())
        mac = jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256).sign(
            f"{header}.{payload}".encode(), secret.encode()
        )
        token = f"{header}.{payload}.{_b64(mac)}"
        assert await _status(client, token) == (401, "token-invalid"), extra


async def test_wrong_type_missing_claims_and_garbage(
    app: FastAPI, client: httpx.AsyncClient, user: Registered
) -> None:
    key = _current(app)

    def sign(claims: dict[str, Any]) -> str:
        return jwt.encode(claims, key.secret, algorithm="HS256", headers={"kid": key.kid})

    claims = _claims(user)
    without_exp = {k: v for k, v in claims.items() if k != "exp"}
    for token in (
        sign(_claims(user, typ="refresh")),
        sign(without_exp),
        sign(_claims(user, sub="not-a-uuid")),
        sign(_claims(user, gen="0")),
        sign(_claims(user, sub=str(uuid.uuid4()))),  # no such user
        sign(_claims(user, pid=str(uuid.uuid4()))),  # not this user's account
        user.refresh_token,
        "not.a.jwt",
        "garbage",
    ):
        assert await _status(client, token) == (401, "token-invalid"), token


async def test_previous_key_accepted_until_removed(
    app: FastAPI,
    client: httpx.AsyncClient,
    user: Registered,
    set_keyring: Callable[[Keyring], None],
) -> None:
    old = _current(app)
    old_token = user.access_token
    new_secret = "the-next-signing-key-0123456789-abcdefghijklmnopqrstuvwxyz"

    # Rotation: a new current key, the old one kept as previous.
    set_keyring(Keyring.from_secrets(new_secret, [old.secret]))
    assert await _status(client, old_token) == (200, "")
    fresh = (await log_in(client, user.login)).json()["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == key_id(new_secret) != old.kid
    assert await _status(client, fresh) == (200, "")

    # One token lifetime later the old key is dropped: its tokens stop working.
    set_keyring(Keyring.from_secrets(new_secret))
    assert await _status(client, old_token) == (401, "token-invalid")
    assert await _status(client, fresh) == (200, "")


async def test_keyring_reads_previous_keys_from_settings(app: FastAPI) -> None:
    class FakeRequest:
        def __init__(self, fake_app: Any) -> None:
            self.app = fake_app

    class FakeApp:
        def __init__(self) -> None:
            from types import SimpleNamespace

            from pydantic import SecretStr

            self.state = SimpleNamespace(
                secrets=SimpleNamespace(jwt_signing_key="current-key"),
                settings=SimpleNamespace(
                    jwt_previous_signing_keys=SecretStr("old-key-1, old-key-2")
                ),
            )

    ring = app_keyring(FakeRequest(FakeApp()))  # type: ignore[arg-type]
    assert ring.current.kid == key_id("current-key")
    assert ring.key_ids == {key_id("current-key"), key_id("old-key-1"), key_id("old-key-2")}
    assert ring.secret_for(key_id("old-key-2")) == "old-key-2"
