"""The audit log's hash chain: pure functions shared by the writer and `audit verify`.

One chain for the whole log: administrative acts are rare, so appending under one lock costs
nothing worth avoiding, and a single chain makes a removed or reordered row as visible as an
edited one. A row's `hash` is `sha256(prev_hash || entry digest)`; the entry digest covers
every column but the id (the order is the chain's, not the sequence's).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

from service.ledger.chain import ZERO_HASH, canonical, link

__all__ = ["ZERO_HASH", "entry_digest", "entry_hash", "state_digest"]


def state_digest(state: Any) -> bytes:
    """SHA-256 of the canonical JSON of a target's state (never secrets: callers leave them
    out). Datetimes, UUIDs and bytes are written as ISO text, text and hex."""
    return hashlib.sha256(canonical(_plain(state))).digest()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def entry_digest(
    *,
    occurred_at: datetime,
    admin_id: uuid.UUID | None,
    actor: str,
    role: str,
    action: str,
    target_type: str,
    target_id: str,
    before_digest: bytes | None,
    after_digest: bytes | None,
    request_id: str | None,
    detail: dict[str, Any],
) -> bytes:
    delta = occurred_at - datetime(1970, 1, 1, tzinfo=occurred_at.tzinfo)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return hashlib.sha256(
        canonical(
            [
                micros,
                str(admin_id) if admin_id else None,
                actor,
                role,
                action,
                target_type,
                target_id,
                before_digest.hex() if before_digest is not None else None,
                after_digest.hex() if after_digest is not None else None,
                request_id,
                _plain(detail),
            ]
        )
    ).digest()


def entry_hash(prev_hash: bytes, digest: bytes) -> bytes:
    return link(prev_hash, digest)
