"""Administrator access tokens: JWT (HS256, the app's keyring) with their own audience.

An admin token carries `aud=carbon-points-admin` and `typ=admin`; the app's verifier
requires `typ=access` and a participant, and this one requires the audience, so neither kind
of token is ever accepted in the other's place.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from service.accounts.tokens import ALGORITHM, Keyring, signing_secret
from service.admin.errors import AdminTokenInvalidError

AUDIENCE = "carbon-points-admin"
TOKEN_TYPE = "admin"  # noqa: S105 (a claim value)
ADMIN_TOKEN_TTL = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class AdminClaims:
    admin_id: uuid.UUID
    generation: int


def mint_admin_token(
    keyring: Keyring, *, admin_id: uuid.UUID, generation: int, now: datetime | None = None
) -> str:
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(admin_id),
        "aud": AUDIENCE,
        "gen": generation,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ADMIN_TOKEN_TTL).timestamp()),
        "jti": secrets.token_urlsafe(12),
        "typ": TOKEN_TYPE,
    }
    key = keyring.current
    return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})


def verify_admin_token(keyring: Keyring, token: str) -> AdminClaims:
    try:
        secret = signing_secret(keyring, token)
    except ValueError as error:
        raise AdminTokenInvalidError(str(error)) from None
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["sub", "aud", "gen", "iat", "exp", "jti", "typ"]},
        )
    except jwt.InvalidTokenError:
        raise AdminTokenInvalidError("the token is expired, or not an administrator's") from None
    generation = claims.get("gen")
    if claims.get("typ") != TOKEN_TYPE or not isinstance(generation, int):
        raise AdminTokenInvalidError("not an administrator token")
    try:
        return AdminClaims(uuid.UUID(str(claims["sub"])), generation)
    except ValueError:
        raise AdminTokenInvalidError("the token's subject is malformed") from None
