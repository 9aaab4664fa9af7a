"""Endpoint secrets, derived and never stored, and the signature header they produce."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import datetime

from integrations import sign_webhook
from service.models import WebhookEndpoint


def derive_endpoint_secret(partner_key: str, endpoint_id: uuid.UUID, salt: bytes) -> str:
    """`whsec_` + base64 of a key derived from the server's partner key: what receivers hold.

    Standard base64 after the prefix, as the Standard Webhooks spec (and its reference
    libraries) decode it.
    """
    digest = hmac.new(
        partner_key.encode(),
        b"webhook-endpoint\x00" + str(endpoint_id).encode() + b"\x00" + salt,
        hashlib.sha256,
    ).digest()
    return "whsec_" + base64.b64encode(digest).decode("ascii")


def signature_header(
    partner_key: str,
    endpoint: WebhookEndpoint,
    *,
    webhook_id: str,
    timestamp: int,
    body: bytes,
    now: datetime,
) -> str:
    """`v1,<sig>` with the current secret, plus the previous secret's while a rotation overlaps."""
    salts = [endpoint.salt]
    if (
        endpoint.previous_salt is not None
        and endpoint.previous_salt_expires_at is not None
        and endpoint.previous_salt_expires_at > now
    ):
        salts.append(endpoint.previous_salt)
    return " ".join(
        sign_webhook(
            secret=derive_endpoint_secret(partner_key, endpoint.id, salt),
            webhook_id=webhook_id,
            timestamp=timestamp,
            body=body,
        )
        for salt in salts
    )
