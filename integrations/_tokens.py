"""Partner-signed tokens the app carries: identity-link tokens and claim vouchers.

A token is `{payload}.{signature}`: `payload` is base64url (no padding) of a JSON object,
`signature` is base64url (no padding) of HMAC-SHA256(key = the partner secret as UTF-8,
message = `cp-token.` + payload). The payload names the signing key (`kid`), the token type
(`typ`), a unique id (`jti`) and an expiry (`exp`, Unix seconds). Partners print vouchers as
QR codes (a receipt, a smart bin) and hand link tokens to their own app's logged-in user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import orjson

from integrations._models import Event

__all__ = ["TokenError", "make_link_token", "make_voucher", "read_token", "verify_token"]


class TokenError(ValueError):
    """A token that is malformed, wrongly signed, of the wrong type or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), b"cp-token." + payload.encode(), hashlib.sha256).digest())


def _token(secret: str, claims: dict[str, Any]) -> str:
    payload = _b64(orjson.dumps(claims, option=orjson.OPT_SORT_KEYS))
    return f"{payload}.{_sign(secret, payload)}"


def make_link_token(
    *, key_id: str, secret: str, subject_ref: str, token_id: str, ttl_seconds: int = 600
) -> str:
    """A token proving the holder owns `subject_ref` (a card or account) at this partner."""
    return _token(
        secret,
        {
            "typ": "link",
            "kid": key_id,
            "jti": token_id,
            "sub": subject_ref,
            "exp": int(time.time()) + ttl_seconds,
        },
    )


def make_voucher(*, key_id: str, secret: str, event: Event, ttl_seconds: int = 7 * 86400) -> str:
    """A claim voucher for one action; `event.external_id` makes it single-use."""
    body = event.to_json()
    body.pop("subject_ref", None)  # the app user who scans it is the subject
    return _token(
        secret,
        {
            "typ": "voucher",
            "kid": key_id,
            "jti": event.external_id,
            "event": body,
            "exp": int(time.time()) + ttl_seconds,
        },
    )


def read_token(token: str) -> tuple[str, str, dict[str, Any]]:
    """Split a token without trusting it: (key id, payload part, claims)."""
    try:
        payload, _signature = token.split(".")
        claims = orjson.loads(_unb64(payload))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise TokenError("not a carbon-points token") from exc
    if not isinstance(claims, dict) or not isinstance(claims.get("kid"), str):
        raise TokenError("the token names no key")
    return claims["kid"], payload, claims


def verify_token(
    token: str, secret: str, expected_type: str, *, now: float | None = None
) -> dict[str, Any]:
    """The claims of a token signed with `secret`, of type `expected_type`, not expired."""
    _kid, payload, claims = read_token(token)
    signature = token.rsplit(".", 1)[1]
    if not hmac.compare_digest(_sign(secret, payload), signature):
        raise TokenError("the token's signature does not match")
    if claims.get("typ") != expected_type:
        raise TokenError(f"expected a {expected_type} token")
    expires = claims.get("exp")
    if type(expires) is not int or expires < (time.time() if now is None else now):
        raise TokenError("the token has expired")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise TokenError("the token has no id")
    return claims
