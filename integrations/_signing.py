"""Request signing for the partner API (HMAC-SHA256, Standard Webhooks style).

Every partner request carries `webhook-key-id`, `webhook-id` (fresh per HTTP attempt),
`webhook-timestamp` (Unix seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256>`). The
signed content binds the credential, the attempt, the time, the method, the exact request target
and the exact body bytes:

    {key_id}.{webhook_id}.{timestamp}.{METHOD}.{path_with_query}.{body}

The HMAC key is the secret string encoded as UTF-8 (not base64-decoded).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = [
    "KEY_ID_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_VERSION",
    "TIMESTAMP_HEADER",
    "WEBHOOK_ID_HEADER",
    "hmac_signature",
    "new_webhook_id",
    "sign_request",
    "signed_content",
]

KEY_ID_HEADER = "webhook-key-id"
WEBHOOK_ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SIGNATURE_VERSION = "v1"


def new_webhook_id() -> str:
    """A fresh id for one HTTP attempt: `msg_` + 26 lower-case base32 characters (128 bits)."""
    return "msg_" + base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=").lower()


def _check_part(name: str, value: str) -> None:
    # A `.` inside key_id or webhook_id would make two different requests sign the same content.
    if not value or "." in value:
        raise ValueError(f"{name} must be non-empty and contain no '.'")


def signed_content(
    *,
    key_id: str,
    webhook_id: str,
    timestamp: int,
    method: str,
    path: str,
    body: bytes,
) -> bytes:
    """The exact bytes a partner request signs.

    `path` is the raw request target (path plus query string, no scheme or host), exactly as
    sent; `body` is the exact bytes sent (empty for GET).
    """
    _check_part("key_id", key_id)
    _check_part("webhook_id", webhook_id)
    if type(timestamp) is not int:
        raise TypeError("timestamp must be an int (Unix seconds)")
    if not path.startswith("/"):
        raise ValueError("path must be the request target, starting with '/'")
    prefix = f"{key_id}.{webhook_id}.{timestamp}.{method.upper()}.{path}."
    return prefix.encode("utf-8") + bytes(body)


def hmac_signature(key: bytes, content: bytes) -> str:
    """`v1,` + standard base64 (padded) of HMAC-SHA256(key, content)."""
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def sign_request(
    *,
    key_id: str,
    secret: str,
    webhook_id: str,
    timestamp: int,
    method: str,
    path: str,
    body: bytes,
) -> str:
    """The `webhook-signature` header value for one partner request attempt."""
    if not secret:
        raise ValueError("secret must not be empty")
    content = signed_content(
        key_id=key_id,
        webhook_id=webhook_id,
        timestamp=timestamp,
        method=method,
        path=path,
        body=body,
    )
    return hmac_signature(secret.encode("utf-8"), content)
