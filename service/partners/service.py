"""Partners: created and managed by administrators (CLI now, admin API later)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from service.errors import ConflictError, ValidationProblem
from service.fields import CODE_PATTERN
from service.models import Partner, PartnerCredential
from service.partners.credentials import IssuedCredential, derive_secret, issue_credential
from service.partners.errors import PartnerKeyNotFoundError, PartnerNotFoundError
from service.partners.repository import PartnerLabel, PartnerRepository

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
    partner = await PartnerRepository.from_session(session).insert_partner(
        code=code,
        name=name,
        kind=kind,
        allowed_action_types=sorted(set(action_types)),
        region=region,
        rate_limit_per_second=rate_limit_per_second,
    )
    if partner is None:
        raise ConflictError(f"a partner with code {code!r} exists")
    return partner


async def partner_by_id(session: AsyncSession, partner_id: uuid.UUID) -> Partner:
    partner = await PartnerRepository.from_session(session).partner(partner_id)
    if partner is None:
        raise PartnerNotFoundError(f"no partner {partner_id}")
    return partner


async def partner_labels(
    session: AsyncSession, partner_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, PartnerLabel]:
    """Each known partner's code and name, by id (unknown ids are left out)."""
    return await PartnerRepository.from_session(session).labels(partner_ids)


async def partner_by_code(session: AsyncSession, code: str) -> Partner:
    partner = await PartnerRepository.from_session(session).partner_by_code(code)
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
    repository = PartnerRepository.from_session(session)
    partner = await repository.partner_by_code(code)
    if partner is None:
        partner = await create_partner(
            session, code=code, name=name, kind=kind, action_types=action_types, region=region
        )
    credential = await repository.oldest_active_credential(partner.id)
    if credential is None:
        return await issue_credential(session, partner_key, partner.id)
    return IssuedCredential(
        credential.key_id,
        derive_secret(partner_key, credential.key_id, credential.salt),
        partner.id,
    )


async def active_scopes(session: AsyncSession) -> set[tuple[str, str | None]]:
    """(action type, region) pairs that some active partner may send."""
    return await PartnerRepository.from_session(session).active_scopes()


async def list_partners(session: AsyncSession) -> Sequence[Partner]:
    """Every partner, by code."""
    return await PartnerRepository.from_session(session).all_partners()


# --- administration (the admin API, issue 15): reads and the partner's status -----------------


async def partners_page(
    session: AsyncSession, *, after_code: str | None, limit: int
) -> Sequence[Partner]:
    """At most `limit` partners by code, after `after_code` (keyset on the unique code)."""
    return await PartnerRepository.from_session(session).page(after_code=after_code, limit=limit)


async def partner_credential(
    session: AsyncSession, partner_id: uuid.UUID, key_id: str
) -> PartnerCredential:
    """One of the partner's keys (another partner's key id is not found)."""
    credential = await PartnerRepository.from_session(session).credential(key_id)
    if credential is None or credential.partner_id != partner_id:
        raise PartnerKeyNotFoundError(f"the partner has no key {key_id}")
    return credential


async def set_partner_status(session: AsyncSession, partner_id: uuid.UUID, status: str) -> Partner:
    """Suspend ('suspended': every request it signs is refused, 403) or reinstate ('active')."""
    if status not in ("active", "suspended"):
        raise ValidationProblem("status is 'active' or 'suspended'")
    partner = await PartnerRepository.from_session(session).set_status(partner_id, status)
    if partner is None:
        raise PartnerNotFoundError(f"no partner {partner_id}")
    return partner
