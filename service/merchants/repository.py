"""All of the merchants domain's SQL: merchants, terminals, offers and API keys. Functions
return the mapped rows and never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import Merchant, MerchantApiKey, MerchantTerminal, Offer


class MerchantRepository:
    """The merchants domain's tables, for one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> MerchantRepository:
        return cls(session)

    async def insert_merchant(
        self, *, code: str, name: str, region: str | None
    ) -> uuid.UUID | None:
        """The new merchant's id; None when the code is taken."""
        merchant_id: uuid.UUID | None = await self.session.scalar(
            insert(Merchant)
            .values(id=uuid.uuid4(), code=code, name=name, region=region)
            .on_conflict_do_nothing(index_elements=["code"])
            .returning(Merchant.id)
        )
        return merchant_id

    async def get(self, merchant_id: uuid.UUID) -> Merchant | None:
        return await self.session.get(Merchant, merchant_id)

    async def by_code(self, code: str) -> Merchant | None:
        found: Merchant | None = await self.session.scalar(
            select(Merchant).where(Merchant.code == code)
        )
        return found

    async def by_ids(self, ids: list[uuid.UUID]) -> list[Merchant]:
        if not ids:
            return []
        return list(
            (await self.session.scalars(select(Merchant).where(Merchant.id.in_(ids)))).all()
        )

    async def add(self, row: MerchantTerminal | Offer | MerchantApiKey) -> None:
        """Insert a terminal, an offer or a key (flushed: constraint errors surface here)."""
        self.session.add(row)
        await self.session.flush()

    async def key_with_merchant(self, key_id: str) -> tuple[MerchantApiKey, Merchant] | None:
        row = (
            await self.session.execute(
                select(MerchantApiKey, Merchant)
                .join(Merchant, Merchant.id == MerchantApiKey.merchant_id)
                .where(MerchantApiKey.key_id == key_id)
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def page(self, *, after_code: str | None, limit: int) -> Sequence[Merchant]:
        query = select(Merchant).order_by(Merchant.code).limit(limit)
        if after_code is not None:
            query = query.where(Merchant.code > after_code)
        return (await self.session.execute(query)).scalars().all()

    async def key(self, key_id: str) -> MerchantApiKey | None:
        return await self.session.get(MerchantApiKey, key_id)

    async def revoke_key(self, key: MerchantApiKey, *, now: datetime) -> MerchantApiKey:
        await self.session.execute(
            update(MerchantApiKey)
            .where(MerchantApiKey.key_id == key.key_id, MerchantApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        await self.session.refresh(key)
        return key

    async def set_status(self, merchant_id: uuid.UUID, status: str) -> Merchant | None:
        await self.session.execute(
            update(Merchant).where(Merchant.id == merchant_id).values(status=status)
        )
        return await self.session.get(Merchant, merchant_id, populate_existing=True)


# --- offers as the redemption domain reads them (exported by the package) -------------------

# An offer's terms, for the till's one statement that consumes a code: the redemption
# domain joins this as `(...) AS o ON o.id = $offer AND o.merchant_id = $merchant`.
OFFER_TERMS_SQL = (
    "SELECT id, merchant_id, points_price, valid_from, valid_to, stock, per_user_limit FROM offers"
)
# A limited offer's row, locked for the rest of the transaction, with its terms as of the lock
# (a row locked after a wait is its latest version). $1 is the offer's id.
LOCK_OFFER_SQL = """
    SELECT points_price, valid_from, valid_to, stock, per_user_limit
    FROM offers WHERE id = $1 FOR UPDATE
"""


async def offers_on_sale(
    session: AsyncSession,
    *,
    now: datetime,
    region: str | None,
    merchant_code: str | None,
    offset: int,
    limit: int | None,
) -> list[tuple[Offer, str, str]]:
    """Offers valid now at active merchants, cheapest first, with the merchant's code and
    name. One statement."""
    query = (
        select(Offer, Merchant.code, Merchant.name)
        .join(Merchant, Merchant.id == Offer.merchant_id)
        .where(Offer.valid_from <= now, Offer.valid_to > now, Merchant.status == "active")
        .order_by(Offer.points_price, Offer.id)
        .offset(offset)
        .limit(limit)
    )
    if region is not None:
        query = query.where(or_(Offer.region.is_(None), Offer.region == region))
    if merchant_code is not None:
        query = query.where(Merchant.code == merchant_code)
    return [(offer, code, name) for offer, code, name in await session.execute(query)]
