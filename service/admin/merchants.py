"""Administrators acting on merchants: create (with a first key), issue, rotate and revoke
keys, suspend and reinstate.

The merchants domain does the work (its service functions; this module touches no table);
each act is recorded in the audit trail in the same transaction, with digests of the state
before and after. A key's state is its id, scopes and dates, never its secret or hash.
Merchant keys have no overlap period: a rotated key stops at once (the till is reconfigured
with the successor in the same change).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service import audit
from service.errors import ConflictError
from service.merchants import service as merchants
from service.merchants.auth import IssuedKey
from service.merchants.auth import issue_key as issue_merchant_key
from service.models import Merchant, MerchantApiKey

FIRST_KEY_SCOPES = ["redeem", "refund", "settlement"]


def merchant_state(merchant: Merchant) -> dict[str, Any]:
    return {
        "id": merchant.id,
        "code": merchant.code,
        "name": merchant.name,
        "region": merchant.region,
        "status": merchant.status,
    }


def key_state(key: MerchantApiKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "merchant_id": key.merchant_id,
        "terminal_id": key.terminal_id,
        "scopes": sorted(key.scopes),
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }


@dataclass(frozen=True, slots=True)
class MerchantWithKey:
    merchant: Merchant
    key: IssuedKey  # the token: shown once, to the caller
    scopes: list[str]


@dataclass(frozen=True, slots=True)
class IssuedMerchantKey:
    key: IssuedKey
    scopes: list[str]


@dataclass(frozen=True, slots=True)
class RotatedKey:
    key: IssuedMerchantKey
    previous: MerchantApiKey


async def list_merchants(
    session: AsyncSession, *, cursor: str | None, limit: int
) -> tuple[Sequence[Merchant], str | None]:
    """A page of merchants by code; the cursor is the last code of the page before."""
    rows = await merchants.merchants_page(session, after_code=cursor, limit=limit + 1)
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].code
    return rows, None


async def create_merchant(
    session: AsyncSession, actor: audit.Actor, *, code: str, name: str, region: str | None
) -> MerchantWithKey:
    merchant = await merchants.create_merchant(session, code=code, name=name, region=region)
    issued = await issue_merchant_key(session, merchant.id, FIRST_KEY_SCOPES)
    await audit.record(
        session,
        actor,
        action="merchant.create",
        target_type="merchant",
        target_id=merchant.code,
        after=merchant_state(merchant),
        detail={"first_key": issued.key_id},
    )
    return MerchantWithKey(merchant, issued, FIRST_KEY_SCOPES)


async def _issue(
    session: AsyncSession,
    actor: audit.Actor,
    merchant: Merchant,
    scopes: list[str],
    terminal_id: Any,
    detail: dict[str, Any],
) -> IssuedMerchantKey:
    issued = await issue_merchant_key(session, merchant.id, scopes, terminal_id)
    key = await merchants.merchant_key(session, merchant.id, issued.key_id)
    await session.refresh(key)
    await audit.record(
        session,
        actor,
        action="merchant.key.issue",
        target_type="merchant-key",
        target_id=issued.key_id,
        after=key_state(key),
        detail={"merchant": merchant.code, **detail},
    )
    return IssuedMerchantKey(issued, sorted(key.scopes))


async def issue_key(
    session: AsyncSession, actor: audit.Actor, code: str, scopes: list[str]
) -> IssuedMerchantKey:
    merchant = await merchants.merchant_by_code(session, code)
    return await _issue(session, actor, merchant, scopes, None, {})


async def _active_key(
    session: AsyncSession, code: str, key_id: str
) -> tuple[Merchant, MerchantApiKey]:
    merchant = await merchants.merchant_by_code(session, code)
    key = await merchants.merchant_key(session, merchant.id, key_id)
    if key.revoked_at is not None:
        raise ConflictError(f"key {key_id} was revoked at {key.revoked_at.isoformat()}")
    return merchant, key


async def revoke_key(
    session: AsyncSession, actor: audit.Actor, code: str, key_id: str, *, now: datetime
) -> MerchantApiKey:
    merchant, key = await _active_key(session, code, key_id)
    before = key_state(key)
    revoked = await merchants.revoke_merchant_key(session, merchant.id, key_id, now=now)
    await audit.record(
        session,
        actor,
        action="merchant.key.revoke",
        target_type="merchant-key",
        target_id=key_id,
        before=before,
        after=key_state(revoked),
        detail={"merchant": code},
    )
    return revoked


async def rotate_key(
    session: AsyncSession, actor: audit.Actor, code: str, key_id: str, *, now: datetime
) -> RotatedKey:
    """A successor with the same scopes and terminal; the old key stops now."""
    merchant, old = await _active_key(session, code, key_id)
    issued = await _issue(
        session, actor, merchant, list(old.scopes), old.terminal_id, {"replaces": key_id}
    )
    before = key_state(old)
    revoked = await merchants.revoke_merchant_key(session, merchant.id, key_id, now=now)
    await audit.record(
        session,
        actor,
        action="merchant.key.rotate",
        target_type="merchant-key",
        target_id=key_id,
        before=before,
        after=key_state(revoked),
        detail={"merchant": code, "successor": issued.key.key_id},
    )
    return RotatedKey(issued, revoked)


async def set_status(session: AsyncSession, actor: audit.Actor, code: str, status: str) -> Merchant:
    """Suspend (its keys are refused) or reinstate a merchant."""
    merchant = await merchants.merchant_by_code(session, code)
    before = merchant_state(merchant)
    updated = await merchants.set_merchant_status(session, merchant.id, status)
    await audit.record(
        session,
        actor,
        action="merchant.suspend" if status == "suspended" else "merchant.reinstate",
        target_type="merchant",
        target_id=code,
        before=before,
        after=merchant_state(updated),
    )
    return updated
