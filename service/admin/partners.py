"""Administrators acting on partners: create (with a first key), issue, rotate and revoke
keys, suspend and reinstate.

The partners domain does the work (its service functions; this module touches no table);
each act is recorded in the audit trail in the same transaction, with digests of the state
before and after. Secrets are never digested or recorded: a key's state is its id and dates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service import audit
from service.errors import ConflictError
from service.models import Partner, PartnerCredential
from service.partners import credentials
from service.partners import service as partners


def partner_state(partner: Partner) -> dict[str, Any]:
    return {
        "id": partner.id,
        "code": partner.code,
        "name": partner.name,
        "kind": partner.kind,
        "allowed_action_types": sorted(partner.allowed_action_types),
        "region": partner.region,
        "status": partner.status,
        "rate_limit_per_second": partner.rate_limit_per_second,
    }


def key_state(key: PartnerCredential) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "partner_id": key.partner_id,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
    }


@dataclass(frozen=True, slots=True)
class PartnerWithKey:
    partner: Partner
    key: credentials.IssuedCredential  # the secret: shown once, to the caller


@dataclass(frozen=True, slots=True)
class RotatedKey:
    key: credentials.IssuedCredential
    previous: PartnerCredential


async def list_partners(
    session: AsyncSession, *, cursor: str | None, limit: int
) -> tuple[Sequence[Partner], str | None]:
    """A page of partners by code; the cursor is the last code of the page before."""
    rows = await partners.partners_page(session, after_code=cursor, limit=limit + 1)
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].code
    return rows, None


async def create_partner(
    session: AsyncSession,
    server_key: str,
    actor: audit.Actor,
    *,
    code: str,
    name: str,
    kind: str,
    action_types: Sequence[str],
    region: str | None,
    rate_limit_per_second: int,
) -> PartnerWithKey:
    partner = await partners.create_partner(
        session,
        code=code,
        name=name,
        kind=kind,
        action_types=action_types,
        region=region,
        rate_limit_per_second=rate_limit_per_second,
    )
    issued = await credentials.issue_credential(session, server_key, partner.id)
    await audit.record(
        session,
        actor,
        action="partner.create",
        target_type="partner",
        target_id=partner.code,
        after=partner_state(partner),
        detail={"first_key": issued.key_id},
    )
    return PartnerWithKey(partner, issued)


async def issue_key(
    session: AsyncSession, server_key: str, actor: audit.Actor, code: str
) -> credentials.IssuedCredential:
    partner = await partners.partner_by_code(session, code)
    issued = await credentials.issue_credential(session, server_key, partner.id)
    key = await partners.partner_credential(session, partner.id, issued.key_id)
    await session.refresh(key)
    await audit.record(
        session,
        actor,
        action="partner.key.issue",
        target_type="partner-key",
        target_id=issued.key_id,
        after=key_state(key),
        detail={"partner": code},
    )
    return issued


async def _active_key(session: AsyncSession, code: str, key_id: str) -> PartnerCredential:
    partner = await partners.partner_by_code(session, code)
    key = await partners.partner_credential(session, partner.id, key_id)
    if key.revoked_at is not None:
        raise ConflictError(f"key {key_id} was revoked at {key.revoked_at.isoformat()}")
    return key


async def rotate_key(
    session: AsyncSession,
    server_key: str,
    actor: audit.Actor,
    code: str,
    key_id: str,
    *,
    overlap: timedelta,
    now: datetime,
) -> RotatedKey:
    """A successor key; the old one keeps working for `overlap`, then stops."""
    old = await _active_key(session, code, key_id)
    before = key_state(old)
    issued = await credentials.rotate_credential(
        session, server_key, key_id, overlap=overlap, now=now
    )
    await session.flush()
    await session.refresh(old)
    await audit.record(
        session,
        actor,
        action="partner.key.rotate",
        target_type="partner-key",
        target_id=key_id,
        before=before,
        after=key_state(old),
        detail={"partner": code, "successor": issued.key_id},
    )
    return RotatedKey(issued, old)


async def revoke_key(
    session: AsyncSession, actor: audit.Actor, code: str, key_id: str, *, now: datetime
) -> PartnerCredential:
    key = await _active_key(session, code, key_id)
    before = key_state(key)
    await credentials.revoke_credential(session, key_id, now=now)
    await session.refresh(key)
    await audit.record(
        session,
        actor,
        action="partner.key.revoke",
        target_type="partner-key",
        target_id=key_id,
        before=before,
        after=key_state(key),
        detail={"partner": code},
    )
    return key


async def set_status(session: AsyncSession, actor: audit.Actor, code: str, status: str) -> Partner:
    """Suspend (every request the partner signs is refused) or reinstate it."""
    partner = await partners.partner_by_code(session, code)
    before = partner_state(partner)
    updated = await partners.set_partner_status(session, partner.id, status)
    await audit.record(
        session,
        actor,
        action="partner.suspend" if status == "suspended" else "partner.reinstate",
        target_type="partner",
        target_id=code,
        before=before,
        after=partner_state(updated),
    )
    return updated
