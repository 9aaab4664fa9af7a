"""All of the partners domain's SQL: the `partners` and `partner_credentials` tables.

`PartnerRepository.from_session(session)`; it never commits (the caller owns the
transaction). The credential lookup runs on every signed request whose key is not in the
credential cache: its statement is built once, here, at import.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import Partner, PartnerCredential

_CREDENTIAL_WITH_PARTNER = (
    select(PartnerCredential, Partner)
    .join(Partner, Partner.id == PartnerCredential.partner_id)
    .where(PartnerCredential.key_id == bindparam("key_id"))
)
_ACTIVE_SCOPES = select(Partner.allowed_action_types, Partner.region).where(
    Partner.status == "active"
)


class PartnerLabel(NamedTuple):
    """How a partner is shown to people: its code and name."""

    code: str
    name: str


class CredentialWithPartner(NamedTuple):
    credential: PartnerCredential
    partner: Partner


@dataclass(frozen=True, slots=True)
class PartnerRepository:
    session: AsyncSession

    @classmethod
    def from_session(cls, session: AsyncSession) -> PartnerRepository:
        return cls(session)

    # --- partners -----------------------------------------------------------------------

    async def insert_partner(
        self,
        *,
        code: str,
        name: str,
        kind: str,
        allowed_action_types: list[str],
        region: str | None,
        rate_limit_per_second: int,
    ) -> Partner | None:
        """The new partner, or None when its code is taken."""
        partner_id = await self.session.scalar(
            insert(Partner)
            .values(
                id=uuid.uuid4(),
                code=code,
                name=name,
                kind=kind,
                allowed_action_types=allowed_action_types,
                region=region,
                rate_limit_per_second=rate_limit_per_second,
            )
            .on_conflict_do_nothing(index_elements=["code"])
            .returning(Partner.id)
        )
        if partner_id is None:
            return None
        return await self.session.get(Partner, partner_id)

    async def partner(self, partner_id: uuid.UUID) -> Partner | None:
        return await self.session.get(Partner, partner_id)

    async def labels(self, partner_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, PartnerLabel]:
        """Each partner's code and name, by id. One statement."""
        if not partner_ids:
            return {}
        rows = await self.session.execute(
            select(Partner.id, Partner.code, Partner.name).where(Partner.id.in_(partner_ids))
        )
        return {pid: PartnerLabel(code, name) for pid, code, name in rows}

    async def partner_by_code(self, code: str) -> Partner | None:
        return await self.session.scalar(select(Partner).where(Partner.code == code))

    async def all_partners(self) -> Sequence[Partner]:
        return (await self.session.scalars(select(Partner).order_by(Partner.code))).all()

    async def active_scopes(self) -> set[tuple[str, str | None]]:
        """(action type, region) pairs that some active partner may send."""
        rows = await self.session.execute(_ACTIVE_SCOPES)
        return {(action, region) for actions, region in rows for action in actions}

    # --- credentials --------------------------------------------------------------------

    async def insert_credential(self, *, key_id: str, partner_id: uuid.UUID, salt: bytes) -> None:
        self.session.add(PartnerCredential(key_id=key_id, partner_id=partner_id, salt=salt))
        await self.session.flush()

    async def credential(self, key_id: str) -> PartnerCredential | None:
        return await self.session.get(PartnerCredential, key_id)

    async def credential_exists(self, key_id: str) -> bool:
        found = await self.session.scalar(
            select(PartnerCredential.key_id).where(PartnerCredential.key_id == key_id)
        )
        return found is not None

    async def oldest_active_credential(self, partner_id: uuid.UUID) -> PartnerCredential | None:
        return await self.session.scalar(
            select(PartnerCredential)
            .where(
                PartnerCredential.partner_id == partner_id, PartnerCredential.revoked_at.is_(None)
            )
            .order_by(PartnerCredential.created_at)
            .limit(1)
        )

    async def revoke_credential(self, key_id: str, *, now: datetime) -> bool:
        """True when an active credential was revoked now."""
        result = await self.session.execute(
            update(PartnerCredential)
            .where(PartnerCredential.key_id == key_id, PartnerCredential.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def credential_with_partner(self, key_id: str) -> CredentialWithPartner | None:
        """A key and its partner: what a signed request is checked against."""
        row = (await self.session.execute(_CREDENTIAL_WITH_PARTNER, {"key_id": key_id})).first()
        return None if row is None else CredentialWithPartner(row[0], row[1])

    async def page(self, *, after_code: str | None, limit: int) -> Sequence[Partner]:
        query = select(Partner).order_by(Partner.code).limit(limit)
        if after_code is not None:
            query = query.where(Partner.code > after_code)
        return (await self.session.execute(query)).scalars().all()

    async def set_status(self, partner_id: uuid.UUID, status: str) -> Partner | None:
        await self.session.execute(
            update(Partner).where(Partner.id == partner_id).values(status=status)
        )
        return await self.session.get(Partner, partner_id, populate_existing=True)
