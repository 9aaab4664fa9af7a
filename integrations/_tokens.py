"""Partner-signed tokens the app carries: identity-link tokens and claim vouchers.

A token is a standard JWT (RFC 7519), so a partner makes it with the JWT library of its
own language:

- header: `{"alg": "HS256", "typ": "JWT", "kid": <the partner key id, pk_...>}`; HS256 only
  (`alg: none` and every other algorithm are refused);
- key: the partner secret (`cpsk_...`) as UTF-8 bytes, the same key that signs requests;
- claims: `typ` (`"link"` or `"voucher"`), `jti` (a unique id), `exp` (Unix seconds), and
  `sub` (the card or account number) for a link token or `event` (the event, without
  `subject_ref`, its `external_id` equal to `jti`) for a voucher. Other claims are ignored.

Partners print vouchers as QR codes (a receipt, a smart bin) and hand link tokens to their
own app's logged-in user.

**Tokens made before issue 17** were `{payload}.{signature}` (two parts: base64url of the
JSON claims with `kid` among them, and base64url of HMAC-SHA256 over `cp-token.` + payload).
The service still verifies them the same way (`verify_token` tells them apart by their two
parts), so a voucher already printed is honoured until it expires (7 days at most); the SDK
makes only JWTs. The legacy format will be refused in a later release.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import jwt
import orjson

from integrations._models import Event

__all__ = ["TokenError", "make_link_token", "make_voucher", "read_token", "verify_token"]

ALGORITHM = "HS256"


class TokenError(ValueError):
    """A token that is malformed, wrongly signed, of the wrong type or expired.

    `kind` says which, for callers that word it themselves: `malformed` (not a token, or a
    required claim missing or mistyped), `signature`, `type` (the other kind of token),
    `expired`, or `key` (a key the verifier does not accept)."""

    def __init__(self, message: str, kind: str = "malformed") -> None:
        super().__init__(message)
        self.kind = kind


def _key(secret: str) -> bytes:
    if not secret:
        raise ValueError("secret must not be empty")
    return secret.encode("utf-8")


def _token(key_id: str, secret: str, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, _key(secret), algorithm=ALGORITHM, headers={"kid": key_id})


def make_link_token(
    *, key_id: str, secret: str, subject_ref: str, token_id: str, ttl_seconds: int = 600
) -> str:
    """A JWT proving the holder owns `subject_ref` (a card or account) at this partner."""
    return _token(
        key_id,
        secret,
        {
            "typ": "link",
            "jti": token_id,
            "sub": subject_ref,
            "exp": int(time.time()) + ttl_seconds,
        },
    )


def make_voucher(*, key_id: str, secret: str, event: Event, ttl_seconds: int = 7 * 86400) -> str:
    """A claim voucher (a JWT) for one action; `event.external_id` makes it single-use."""
    body = event.to_json()
    body.pop("subject_ref", None)  # the app user who scans it is the subject
    return _token(
        key_id,
        secret,
        {
            "typ": "voucher",
            "jti": event.external_id,
            "event": body,
            "exp": int(time.time()) + ttl_seconds,
        },
    )


# --- the legacy two-part format (before issue 17), verified only --------------------------


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _legacy_signature(secret: str, payload: str) -> str:
    digest = hmac.new(_key(secret), b"cp-token." + payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _legacy_claims(payload: str) -> dict[str, Any]:
    try:
        claims = orjson.loads(_unb64(payload))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise TokenError("not a carbon-points token") from exc
    if not isinstance(claims, dict):
        raise TokenError("not a carbon-points token")
    return claims


def read_token(token: str) -> tuple[str, str, dict[str, Any]]:
    """Split a token without trusting it: (key id, format, unverified claims); the format
    is `"jwt"` or `"legacy"` (the two-part tokens made before issue 17)."""
    parts = token.split(".")
    if len(parts) == 3:
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError as exc:
            raise TokenError("not a JWT") from exc
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("the token names no key (the JWT header's kid)")
        return kid, "jwt", claims
    if len(parts) == 2:
        claims = _legacy_claims(parts[0])
        if not isinstance(claims.get("kid"), str) or not claims["kid"]:
            raise TokenError("the token names no key")
        return claims["kid"], "legacy", claims
    raise TokenError("not a JWT")


def verify_token(
    token: str, secret: str, expected_type: str, *, now: float | None = None
) -> dict[str, Any]:
    """The claims of a token signed with `secret`, of type `expected_type`, not expired."""
    _kid, kind, _unverified = read_token(token)
    if kind == "jwt":
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                _key(secret),
                algorithms=[ALGORITHM],
                # exp is checked below against `now`; nbf and iat, when present, by PyJWT.
                options={"verify_exp": False, "verify_aud": False, "require": ["exp", "jti"]},
            )
        except jwt.InvalidSignatureError:
            raise TokenError("the token's signature does not match", "signature") from None
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"invalid token: {exc}") from None
    else:
        payload, signature = token.split(".")
        if not hmac.compare_digest(_legacy_signature(secret, payload), signature):
            raise TokenError("the token's signature does not match", "signature")
        claims = _legacy_claims(payload)
    if claims.get("typ") != expected_type:
        raise TokenError(f"expected a {expected_type} token", "type")
    expires = claims.get("exp")
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise TokenError("the token has no expiry")
    if expires < (time.time() if now is None else now):
        raise TokenError("the token has expired", "expired")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise TokenError("the token has no id")
    return claims
