"""Partners: created and managed by administrators (CLI now, admin API later)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.errors import ConflictError, ValidationProblem
from service.fields import CODE_PATTERN
from service.models import Partner, PartnerCredential
from service.partners.credentials import IssuedCredential, derive_secret, issue_credential
from service.partners.errors import PartnerKeyNotFoundError, PartnerNotFoundError

KINDS = ("transit", "bikeshare", "maas", "utility", "retail", "waste")
_CODE = re.compile(CODE_PATTERN)
_ACTION = re.compile(r"^[a-z_]{1,30}\.[a-z_]{1,30}$")


async def create_partner(
    session: AsyncSession,
    *,
    code: str,
    name: str,
    kind: str,
    action_types: Sequence[str],
    region: str | None = None,
    rate_limit_per_second: int = 2000,
) -> Partner:
    """A new partner; the same code twice is a conflict."""
    if not _CODE.match(code):
        raise ValidationProblem("code: 2-63 lower-case letters, digits and '-'")
    if kind not in KINDS:
        raise ValidationProblem(f"kind must be one of {', '.join(KINDS)}")
    if not action_types or not all(_ACTION.match(a) for a in action_types):
        raise ValidationProblem("action types look like 'transit.metro'")
    if rate_limit_per_second <= 0:
        raise ValidationProblem("the rate limit must be positive")
    result = await session.execute(
        insert(Partner)
        .values(
            id=uuid.uuid4(),
            code=code,
            name=name,
            kind=kind,
            allowed_action_types=sorted(set(action_types)),
            region=region,
            rate_limit_per_second=rate_limit_per_second,
        )
        .on_conflict_do_nothing(index_elements=["code"])
        .returning(Partner.id)
    )
    partner_id = result.scalar()
    if partner_id is None:
        raise ConflictError(f"a partner with code {code!r} exists")
    partner = await session.get(Partner, partner_id)
    assert partner is not None
    return partner


async def partner_by_code(session: AsyncSession, code: str) -> Partner:
    partner = await session.scalar(select(Partner).where(Partner.code == code))
    if partner is None:
        raise PartnerNotFoundError(f"no partner {code!r}")
    return partner


async def ensure_demo_partner(
    session: AsyncSession,
    partner_key: str,
    *,
    code: str,
    name: str,
    kind: str,
    action_types: Sequence[str],
    region: str | None,
) -> IssuedCredential:
    """The partner and one credential, created once; the same credential on every call."""
    partner = await session.scalar(select(Partner).where(Partner.code == code))
    if partner is None:
        partner = await create_partner(
            session, code=code, name=name, kind=kind, action_types=action_types, region=region
        )
    credential = await session.scalar(
        select(PartnerCredential)
        .where(PartnerCredential.partner_id == partner.id, PartnerCredential.revoked_at.is_(None))
        .order_by(PartnerCredential.created_at)
        .limit(1)
    )
    if credential is None:
        return await issue_credential(session, partner_key, partner.id)
    return IssuedCredential(
        credential.key_id,
        derive_secret(partner_key, credential.key_id, credential.salt),
        partner.id,
    )


async def active_scopes(session: AsyncSession) -> set[tuple[str, str | None]]:
    """(action type, region) pairs that some active partner may send."""
    rows = await session.execute(
        select(Partner.allowed_action_types, Partner.region).where(Partner.status == "active")
    )
    return {(action, region) for actions, region in rows for action in actions}


# --- administration (the admin API, issue 15): reads and the partner's status -----------------


async def partners_page(
    session: AsyncSession, *, after_code: str | None, limit: int
) -> Sequence[Partner]:
    """At most `limit` partners by code, after `after_code` (keyset on the unique code)."""
    query = select(Partner).order_by(Partner.code).limit(limit)
    if after_code is not None:
        query = query.where(Partner.code > after_code)
    return (await session.execute(query)).scalars().all()


async def partner_credential(
    session: AsyncSession, partner_id: uuid.UUID, key_id: str
) -> PartnerCredential:
    """One of the partner's keys (another partner's key id is not found)."""
    credential = await session.get(PartnerCredential, key_id)
    if credential is None or credential.partner_id != partner_id:
        raise PartnerKeyNotFoundError(f"the partner has no key {key_id}")
    return credential


async def set_partner_status(session: AsyncSession, partner_id: uuid.UUID, status: str) -> Partner:
    """Suspend ('suspended': every request it signs is refused, 403) or reinstate ('active')."""
    if status not in ("active", "suspended"):
        raise ValidationProblem("status is 'active' or 'suspended'")
    await session.execute(update(Partner).where(Partner.id == partner_id).values(status=status))
    partner = await session.get(Partner, partner_id, populate_existing=True)
    if partner is None:
        raise PartnerNotFoundError(f"no partner {partner_id}")
    return partner
