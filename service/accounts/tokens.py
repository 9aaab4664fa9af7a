"""Access tokens (JWT, HS256, signed by a keyring) and opaque refresh tokens.

Access tokens live ten minutes and carry `sub` (user id), `pid` (participant id),
`gen` (the user's token generation, see `User.token_generation`), `iat`, `exp`,
`jti` and `typ=access`, with the signing key's id in the `kid` header.

Keys rotate without logging anyone out: new tokens are signed with the current key
only, while tokens signed with a previous key are accepted until they expire; once
a key leaves the keyring (after one token lifetime) its tokens stop working.
Verification pins the algorithm to HS256 before looking at anything else, so
`alg: none` and algorithm confusion (RS256/ES256 headers, HS384/HS512) are refused.

Refresh tokens are random strings; only their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from service.accounts.errors import TokenExpiredError, TokenInvalidError
from service.i18n import _

ALGORITHM = "HS256"
ACCESS_TOKEN_TTL = timedelta(minutes=10)
REFRESH_TOKEN_TTL = timedelta(days=30)
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 (a claim value)
REFRESH_TOKEN_PREFIX = "cprt_"  # noqa: S105 (a prefix)
_REQUIRED_CLAIMS = ["sub", "pid", "gen", "iat", "exp", "jti", "typ"]


def key_id(secret: str) -> str:
    """A key's id, derived from the key so operators never keep a second list in step."""
    return "k" + hashlib.sha256(b"carbon-points jwt kid\x00" + secret.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    secret: str = field(repr=False)

    @classmethod
    def from_secret(cls, secret: str) -> SigningKey:
        return cls(key_id(secret), secret)


class Keyring:
    """The current signing key and the previous ones still accepted."""

    def __init__(self, current: SigningKey, previous: Iterable[SigningKey] = ()) -> None:
        self.current = current
        self._keys = {key.kid: key.secret for key in previous}
        self._keys[current.kid] = current.secret

    @classmethod
    def from_secrets(cls, current: str, previous: Iterable[str] = ()) -> Keyring:
        return cls(
            SigningKey.from_secret(current),
            [SigningKey.from_secret(s) for s in previous if s and s != current],
        )

    def secret_for(self, kid: str) -> str | None:
        return self._keys.get(kid)

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    participant_id: uuid.UUID
    generation: int
    token_id: str
    expires_at: datetime


def mint_access_token(
    keyring: Keyring,
    *,
    user_id: uuid.UUID,
    participant_id: uuid.UUID,
    generation: int,
    now: datetime | None = None,
    ttl: timedelta = ACCESS_TOKEN_TTL,
) -> str:
    """A signed access token for the user, with the keyring's current key."""
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "pid": str(participant_id),
        "gen": generation,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": secrets.token_urlsafe(12),
        "typ": ACCESS_TOKEN_TYPE,
    }
    key = keyring.current
    return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})


def signing_secret(keyring: Keyring, token: str) -> str:
    """The keyring's secret that verifies `token`, chosen by its header; the app's and the
    administrators' tokens share it. Raises ValueError saying why there is none: not a JWT,
    not HS256 (checked before any key is chosen), or an unknown `kid`."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise ValueError("the bearer token is not a JWT") from None
    if header.get("alg") != ALGORITHM:
        raise ValueError(f"only {ALGORITHM} tokens are accepted")
    kid = header.get("kid")
    secret = keyring.secret_for(kid) if isinstance(kid, str) else None
    if secret is None:
        raise ValueError("the token's signing key is unknown")
    return secret


def verify_access_token(keyring: Keyring, token: str) -> AccessClaims:
    """The token's claims, or TokenExpiredError / TokenInvalidError."""
    try:
        secret = signing_secret(keyring, token)
    except ValueError as error:
        raise TokenInvalidError(str(error)) from None
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": _REQUIRED_CLAIMS, "verify_sub": True, "verify_jti": True},
        )
    except jwt.ExpiredSignatureError:
        raise TokenExpiredError(_("the access token has expired; refresh it")) from None
    except jwt.InvalidTokenError:
        raise TokenInvalidError(_("the token's signature or claims are invalid")) from None
    if claims.get("typ") != ACCESS_TOKEN_TYPE:
        raise TokenInvalidError(_("not an access token"))
    generation = claims.get("gen")
    try:
        user_id = uuid.UUID(claims["sub"])
        participant_id = uuid.UUID(str(claims["pid"]))
    except (ValueError, TypeError):
        raise TokenInvalidError(_("the token's subject is malformed")) from None
    if not isinstance(generation, int) or isinstance(generation, bool):
        raise TokenInvalidError(_("the token's generation is malformed"))
    return AccessClaims(
        user_id,
        participant_id,
        generation,
        str(claims["jti"]),
        datetime.fromtimestamp(claims["exp"], UTC),
    )


def new_refresh_token() -> str:
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


def refresh_token_hash(token: str) -> bytes:
    # 256 random bits need no salt or pepper: a plain SHA-256 cannot be brute-forced.
    return hashlib.sha256(token.encode()).digest()
