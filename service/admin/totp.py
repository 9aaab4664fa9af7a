"""TOTP second factor (RFC 6238, 30 s steps, 6 digits, via pyotp).

The secret is derived, never stored: HMAC-SHA256 of the server's partner key over the
administrator's id and a per-administrator salt (a new salt re-enrols). A code is accepted
one step either side of now, and only once: the step it matched is remembered and a code of
that step or an earlier one is refused (RFC 6238 §5.2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import datetime

import pyotp

ISSUER = "carbon-points"
STEP_SECONDS = 30


def derive_secret(server_key: str, admin_id: uuid.UUID, salt: bytes) -> str:
    digest = hmac.new(
        server_key.encode(), b"admin-totp\x00" + admin_id.bytes + b"\x00" + salt, hashlib.sha256
    ).digest()
    return base64.b32encode(digest[:20]).decode()


def provisioning_uri(secret: str, login: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=login, issuer_name=ISSUER)


def code_at(secret: str, moment: datetime) -> str:
    return pyotp.TOTP(secret).at(moment)


def matching_step(secret: str, code: str, now: datetime, last_step: int) -> int | None:
    """The step the code belongs to (within one step of now and after `last_step`), or None."""
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in (current, current - 1, current + 1):
        if step <= last_step:
            continue
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None
