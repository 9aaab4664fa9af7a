"""Partner credentials: issued, rotated with an overlap, revoked; secrets never stored.

A credential's secret is derived when needed from the server's partner key, the key
id and a per-credential salt: HMAC-SHA256 cannot verify against a hash of the secret,
so instead of keeping an encrypted copy the server keeps nothing it would have to
protect besides the one partner key it already holds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from service.partners.errors import PartnerNotFoundError, UnknownKeyError
from service.partners.repository import PartnerRepository


def derive_secret(partner_key: str, key_id: str, salt: bytes) -> str:
    digest = hmac.new(
        partner_key.encode(),
        b"partner-credential\x00" + key_id.encode() + b"\x00" + salt,
        hashlib.sha256,
    ).digest()
    return "cpsk_" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def subject_hash(pepper: str, partner_id: uuid.UUID, subject_ref: str) -> bytes:
    """The keyed hash that stands for a card or account number; the number is never kept."""
    return hmac.new(
        pepper.encode(), partner_id.bytes + b"\x00" + subject_ref.encode(), hashlib.sha256
    ).digest()


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    key_id: str
    secret: str
    partner_id: uuid.UUID


async def issue_credential(
    session: AsyncSession, partner_key: str, partner_id: uuid.UUID
) -> IssuedCredential:
    """A new key id and secret for a partner; the secret is shown once, to the caller."""
    repository = PartnerRepository.from_session(session)
    if await repository.partner(partner_id) is None:
        raise PartnerNotFoundError(f"no partner {partner_id}")
    key_id = "pk_" + secrets.token_hex(12)
    salt = secrets.token_bytes(16)
    await repository.insert_credential(key_id=key_id, partner_id=partner_id, salt=salt)
    return IssuedCredential(key_id, derive_secret(partner_key, key_id, salt), partner_id)


async def rotate_credential(
    session: AsyncSession, partner_key: str, key_id: str, *, overlap: timedelta, now: datetime
) -> IssuedCredential:
    """Issue a successor; the old key keeps working for `overlap`, then stops."""
    old = await PartnerRepository.from_session(session).credential(key_id)
    if old is None or old.revoked_at is not None:
        raise UnknownKeyError(f"no active key {key_id}")
    fresh = await issue_credential(session, partner_key, old.partner_id)
    ends = now + overlap
    if old.expires_at is None or old.expires_at > ends:
        old.expires_at = ends
    return fresh


async def revoke_credential(session: AsyncSession, key_id: str, *, now: datetime) -> None:
    repository = PartnerRepository.from_session(session)
    revoked = await repository.revoke_credential(key_id, now=now)
    if not revoked and not await repository.credential_exists(key_id):
        raise UnknownKeyError(f"no key {key_id}")
