"""The console's session cookie and its anti-forgery (CSRF) tokens.

The session is a signed token (JWT, HS256, the app's keyring, so the key comes from the
settings' secrets and never from code) in an HttpOnly, SameSite=Strict cookie scoped to
`/admin`, Secure everywhere but development. It has its own audience
(`carbon-points-console`): it is never taken for an API bearer token, nor an API token for
it. It lives 15 minutes and is renewed while it is used, for at most 8 hours after the
login; it carries the administrator's token generation, so a role change, a disabled
account or a revocation ends it at once (the administrator is read from the database on
every request, as the API does).

CSRF: every form carries a token derived from the session's id (HMAC with the signing key),
checked on every POST, together with `Origin` when the browser sends one. The login form,
before any session, is bound the same way to a random nonce in its own short-lived cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from service.accounts.tokens import ALGORITHM, Keyring, signing_secret

AUDIENCE = "carbon-points-console"
TOKEN_TYPE = "console"  # noqa: S105 (a claim value)
COOKIE = "cp_console"
LOGIN_COOKIE = "cp_console_login"
COOKIE_PATH = "/admin"
SESSION_TTL = timedelta(minutes=15)
SESSION_MAX_AGE = timedelta(hours=8)
LOGIN_NONCE_TTL = timedelta(minutes=30)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    admin_id: uuid.UUID
    generation: int
    session_id: str
    issued_at: datetime
    logged_in_at: datetime

    def needs_renewal(self, now: datetime) -> bool:
        """Past half its life, and the login not older than the 8 hours a session may last."""
        return (
            now - self.issued_at > SESSION_TTL / 2
            and now + SESSION_TTL - self.logged_in_at <= SESSION_MAX_AGE
        )


def mint_session(
    keyring: Keyring,
    *,
    admin_id: uuid.UUID,
    generation: int,
    now: datetime,
    session_id: str | None = None,
    logged_in_at: datetime | None = None,
) -> str:
    login_time = logged_in_at or now
    expires = min(now + SESSION_TTL, login_time + SESSION_MAX_AGE)
    claims: dict[str, Any] = {
        "sub": str(admin_id),
        "aud": AUDIENCE,
        "gen": generation,
        "sid": session_id or secrets.token_urlsafe(16),
        "iat": int(now.timestamp()),
        "auth": int(login_time.timestamp()),
        "exp": int(expires.timestamp()),
        "typ": TOKEN_TYPE,
    }
    key = keyring.current
    return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})


def read_session(keyring: Keyring, token: str) -> ConsoleSession | None:
    """The session a cookie holds, or None if it is not a valid, unexpired console session."""
    try:
        secret = signing_secret(keyring, token)
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["sub", "aud", "gen", "sid", "iat", "auth", "exp", "typ"]},
        )
        if claims["typ"] != TOKEN_TYPE:
            return None
        generation, sid = claims["gen"], claims["sid"]
        issued, auth = claims["iat"], claims["auth"]
        if not (isinstance(generation, int) and isinstance(sid, str)):
            return None
        if not (isinstance(issued, int) and isinstance(auth, int)):
            return None
        return ConsoleSession(
            uuid.UUID(str(claims["sub"])),
            generation,
            sid,
            datetime.fromtimestamp(issued, UTC),
            datetime.fromtimestamp(auth, UTC),
        )
    except (ValueError, jwt.InvalidTokenError):
        return None


def _mac(keyring: Keyring, purpose: bytes, value: str) -> str:
    digest = hmac.new(
        keyring.current.secret.encode(), purpose + b"\x00" + value.encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_token(keyring: Keyring, session_id: str) -> str:
    """The anti-forgery token of the forms of one session."""
    return _mac(keyring, b"console-csrf", session_id)


def login_csrf_token(keyring: Keyring, nonce: str) -> str:
    """The anti-forgery token of the login form, bound to its nonce cookie."""
    return _mac(keyring, b"console-login-csrf", nonce)


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def tokens_match(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
