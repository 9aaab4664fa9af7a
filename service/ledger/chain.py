"""The hash chain: pure functions shared by the writer and `ledger verify`.

Each account carries its own chain. A posting's link is
`sha256(previous link || posting digest)`, and the posting digest covers the
posting (account, asset, amount, sequence number) and the digest of its
transaction (id, origin, key, kind, canonical request, created_at). The writer
already holds each touched account's row lock to update its balance, so
chaining costs no extra lock and never serialises unrelated writes. Editing,
deleting or inserting any transaction or posting row breaks at least one chain.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson

ZERO_HASH = b"\x00" * 32


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace; the same bytes on every machine."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def transaction_digest(
    transaction_id: int,
    origin: str,
    idempotency_key: str,
    kind: str,
    request: dict[str, Any],
    created_at: datetime,
) -> bytes:
    micros = _epoch_micros(created_at)
    return hashlib.sha256(
        canonical([transaction_id, origin, idempotency_key, kind, request, micros])
    ).digest()


def posting_digest(
    transaction_digest_: bytes, account_id: int, asset: str, amount: int, account_seq: int
) -> bytes:
    return hashlib.sha256(
        canonical([transaction_digest_.hex(), account_id, asset, amount, account_seq])
    ).digest()


def link(previous: bytes, digest: bytes) -> bytes:
    return hashlib.sha256(previous + digest).digest()


def _epoch_micros(moment: datetime) -> int:
    # Integer arithmetic on the timedelta: no float ever touches the digest.
    delta = moment - datetime(1970, 1, 1, tzinfo=moment.tzinfo)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
