"""Outbound webhooks (carbon-points → merchants and partners), Standard Webhooks scheme.

Headers `webhook-id`, `webhook-timestamp`, `webhook-signature`; signed content
`{webhook_id}.{timestamp}.{body}`; signature `v1,<base64 HMAC-SHA256>`, several space-separated
during secret rotation.

The HMAC key: a `whsec_…` secret is base64-decoded after the prefix, as Standard Webhooks
specifies; any other secret (this project's `cpsk_…` style) is used as its UTF-8 bytes, the same
convention as partner request signing.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Mapping

from integrations._errors import WebhookVerificationError
from integrations._signing import (
    SIGNATURE_HEADER,
    SIGNATURE_VERSION,
    TIMESTAMP_HEADER,
    WEBHOOK_ID_HEADER,
    hmac_signature,
)

__all__ = ["DEFAULT_TOLERANCE", "sign_webhook", "verify_webhook", "webhook_signed_content"]

DEFAULT_TOLERANCE = 300
_STANDARD_PREFIX = "whsec_"


def _key(secret: str) -> bytes:
    if not secret:
        raise ValueError("secret must not be empty")
    if secret.startswith(_STANDARD_PREFIX):
        try:
            return base64.b64decode(secret.removeprefix(_STANDARD_PREFIX), validate=True)
        except binascii.Error:
            raise ValueError("a whsec_ secret must be base64 after the prefix") from None
    return secret.encode("utf-8")


def webhook_signed_content(*, webhook_id: str, timestamp: int, body: bytes) -> bytes:
    """The exact bytes an outbound webhook signs: `{webhook_id}.{timestamp}.{body}`."""
    return f"{webhook_id}.{timestamp}.".encode() + bytes(body)


def sign_webhook(*, secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature for an outbound webhook (join several with spaces to rotate)."""
    content = webhook_signed_content(webhook_id=webhook_id, timestamp=timestamp, body=body)
    return hmac_signature(_key(secret), content)


def verify_webhook(
    *,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check an inbound webhook's signature and freshness; return None or raise.

    `headers` may use any capitalisation; `body` must be the raw bytes received (before any JSON
    parsing). Raises WebhookVerificationError on missing or malformed headers, a timestamp more
    than `tolerance` seconds from `now` (default: the current time), or when no `v1` signature
    matches. Signatures are compared in constant time. Replay protection beyond the timestamp
    window (remembering webhook-ids) is the receiver's job.
    """
    key = _key(secret)
    lowered = {name.lower(): value for name, value in headers.items()}
    webhook_id = lowered.get(WEBHOOK_ID_HEADER)
    raw_timestamp = lowered.get(TIMESTAMP_HEADER)
    raw_signatures = lowered.get(SIGNATURE_HEADER)
    if not webhook_id or not raw_timestamp or not raw_signatures:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    raw_timestamp = raw_timestamp.strip()
    if not raw_timestamp.isascii() or not raw_timestamp.isdigit():
        raise WebhookVerificationError("webhook-timestamp is not an integer of Unix seconds")
    timestamp = int(raw_timestamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance window")

    expected_value = hmac_signature(
        key, webhook_signed_content(webhook_id=webhook_id, timestamp=timestamp, body=body)
    )
    expected_b64 = expected_value.partition(",")[2].encode("ascii")
    matched = False
    for candidate in raw_signatures.split():
        version, sep, value = candidate.partition(",")
        if not sep or version != SIGNATURE_VERSION:
            continue  # other schemes (v1a, …) are not ours to judge
        # No early exit: the time taken does not tell which signature matched.
        matched |= hmac.compare_digest(value.encode("utf-8"), expected_b64)
    if not matched:
        raise WebhookVerificationError("no matching v1 signature")
