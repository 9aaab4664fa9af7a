"""All of the redemption domain's SQL: tokens, redemptions, and offer stock as redemptions
take it. Typed rows out; functions never commit.

The till's statements (a token consumed with its offer's terms, a redemption inserted or
found) go straight to asyncpg in the session's transaction (`service.db.driver`): they run
on every authorise and capture, where SQLAlchemy's per-statement Python was a tenth of the
request's cost (docs/performance.md, issue 12).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import driver
from service.ledger import hold_is_live_sql
from service.merchants import LOCK_OFFER_SQL, OFFER_TERMS_SQL
from service.models import Redemption, RedemptionToken
from service.webhooks import subscribed_endpoints_sql


@dataclass(frozen=True, slots=True)
class OfferTerms:
    """An offer as a till redeems it."""

    points_price: int
    valid_from: datetime
    valid_to: datetime
    stock: int | None
    per_user_limit: int | None

    @property
    def limited(self) -> bool:
        return self.stock is not None or self.per_user_limit is not None


@dataclass(frozen=True, slots=True)
class Consumed:
    """A redemption code just used: whose it was, the offer's terms, who listens."""

    participant_id: uuid.UUID
    offer: OfferTerms | None
    subscribers: list[uuid.UUID]


@dataclass(frozen=True, slots=True)
class RedemptionRow:
    id: uuid.UUID
    merchant_id: uuid.UUID
    terminal_id: uuid.UUID | None
    participant_id: uuid.UUID
    offer_id: uuid.UUID | None
    points: int
    hold_id: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RedemptionRecord:
    id: uuid.UUID
    merchant_id: uuid.UUID
    offer_id: uuid.UUID | None
    points: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RedemptionCodeRecord:
    """A code shown at a till; never the code itself (only its hash is kept)."""

    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


# With the merchant's webhook subscribers to the event the call will announce: the
# webhooks domain's own subquery, so that announcing costs no statement when nobody listens.
_AUTHORISED_SUBSCRIBERS = subscribed_endpoints_sql("'merchant'", "$4", "'redemption.authorised'")
_CAPTURED_SUBSCRIBERS = subscribed_endpoints_sql("'merchant'", "$2", "'redemption.captured'")
_CONSUME_CODE = f"""
    WITH token AS (
        UPDATE redemption_tokens SET used_at = $1
        WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1
        RETURNING participant_id
    )
    SELECT token.participant_id, o.points_price, o.valid_from, o.valid_to, o.stock,
           o.per_user_limit, {_AUTHORISED_SUBSCRIBERS} AS subscribers
    FROM token LEFT JOIN ({OFFER_TERMS_SQL}) AS o ON o.id = $3 AND o.merchant_id = $4
"""  # noqa: S608 (constant SQL; values are bound)
# Taken: redemptions whose hold is pending or captured (a voided or expired hold gives its
# stock back without anyone having to remember to).
# The locked row's terms are returned: a row locked after a wait is its latest version, so
# its stock and limit are current even if the offer changed while this request waited.
_LOCK_OFFER = LOCK_OFFER_SQL
_OFFER_TAKEN = f"""
    SELECT count(*), count(*) FILTER (WHERE r.participant_id = $2)
    FROM redemptions AS r
    WHERE r.offer_id = $1 AND {hold_is_live_sql("r.hold_id")}
"""  # noqa: S608 (the ledger's constant condition; values are bound)
_INSERT_REDEMPTION = """
    INSERT INTO redemptions
        (id, merchant_id, terminal_id, participant_id, offer_id, points, hold_id, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""
_GET_REDEMPTION = """
    SELECT id, merchant_id, terminal_id, participant_id, offer_id, points, hold_id, created_at
    FROM redemptions
    WHERE id = $1 AND merchant_id = $2 AND ($3::uuid IS NULL OR terminal_id = $3)
"""
_GET_FOR_CAPTURE = f"""
    SELECT id, merchant_id, terminal_id, participant_id, offer_id, points, hold_id, created_at,
           {_CAPTURED_SUBSCRIBERS} AS subscribers
    FROM redemptions
    WHERE id = $1 AND merchant_id = $2 AND ($3::uuid IS NULL OR terminal_id = $3)
"""  # noqa: S608 (constant SQL; values are bound)
_EXPIRED_SUBSCRIBERS = subscribed_endpoints_sql(
    "'merchant'", "redemptions.merchant_id", "'redemption.expired'"
)
_BY_HOLDS = f"""
    SELECT id, merchant_id, terminal_id, participant_id, offer_id, points, hold_id, created_at,
           {_EXPIRED_SUBSCRIBERS} AS subscribers
    FROM redemptions
    WHERE hold_id = ANY($1::bigint[])
    ORDER BY hold_id
"""  # noqa: S608 (constant SQL; values are bound)
_tokens = cast(Table, RedemptionToken.__table__)
_LIVE_HOLD = text(hold_is_live_sql("redemptions.hold_id"))


class RedemptionRepository:
    """The redemption domain's tables, for one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> RedemptionRepository:
        return cls(session)

    async def insert_token(
        self, token_hash: bytes, participant_id: uuid.UUID, expires_at: datetime
    ) -> None:
        await self.session.execute(
            insert(_tokens).values(
                token_hash=token_hash, participant_id=participant_id, expires_at=expires_at
            )
        )

    async def consume_token(
        self,
        token_hash: bytes,
        *,
        now: datetime,
        offer_id: uuid.UUID | None,
        merchant_id: uuid.UUID,
    ) -> Consumed | None:
        """Mark the token used and return its participant, with the terms of `offer_id` at
        this merchant (None: no such offer here, or none asked for) and the merchant's
        webhook endpoints subscribed to `redemption.authorised`; None when the token is
        unknown, used or expired. One statement."""
        connection = await driver(self.session)
        row = await connection.fetchrow(_CONSUME_CODE, now, token_hash, offer_id, merchant_id)
        if row is None:
            return None
        terms = OfferTerms(row[1], row[2], row[3], row[4], row[5]) if row[1] is not None else None
        return Consumed(row[0], terms, list(row[6]))

    async def lock_offer_and_count_taken(
        self, offer_id: uuid.UUID, participant_id: uuid.UUID
    ) -> tuple[OfferTerms, int, int]:
        """Lock the offer (redemptions of a limited offer queue here); return its terms as
        locked, and count, after the lock, its redemptions still pending or captured: all,
        and the participant's. Two statements: counted in the statement that waited for the
        lock, redemptions that committed during the wait would not be seen."""
        connection = await driver(self.session)
        terms = await connection.fetchrow(_LOCK_OFFER, offer_id)
        assert terms is not None  # offers are never deleted
        row = await connection.fetchrow(_OFFER_TAKEN, offer_id, participant_id)
        assert row is not None
        return OfferTerms(*terms), int(row[0]), int(row[1])

    async def insert(self, row: RedemptionRow) -> None:
        connection = await driver(self.session)
        await connection.execute(
            _INSERT_REDEMPTION,
            row.id,
            row.merchant_id,
            row.terminal_id,
            row.participant_id,
            row.offer_id,
            row.points,
            row.hold_id,
            row.created_at,
        )

    async def get(
        self,
        merchant_id: uuid.UUID,
        redemption_id: uuid.UUID,
        terminal_id: uuid.UUID | None = None,
    ) -> RedemptionRow | None:
        """The merchant's redemption; with `terminal_id`, only if that terminal made it."""
        connection = await driver(self.session)
        row = await connection.fetchrow(_GET_REDEMPTION, redemption_id, merchant_id, terminal_id)
        return RedemptionRow(*row) if row is not None else None

    async def get_for_capture(
        self, merchant_id: uuid.UUID, redemption_id: uuid.UUID, terminal_id: uuid.UUID | None
    ) -> tuple[RedemptionRow, list[uuid.UUID]] | None:
        """`get`, with the merchant's webhook endpoints subscribed to `redemption.captured`."""
        connection = await driver(self.session)
        row = await connection.fetchrow(_GET_FOR_CAPTURE, redemption_id, merchant_id, terminal_id)
        return (RedemptionRow(*row[:8]), list(row[8])) if row is not None else None

    async def by_holds_for_expiry(
        self, hold_ids: list[int]
    ) -> list[tuple[RedemptionRow, list[uuid.UUID]]]:
        """The redemptions of these ledger holds (a hold placed by no redemption has none),
        each with its merchant's endpoints subscribed to `redemption.expired`. One statement."""
        connection = await driver(self.session)
        rows = await connection.fetch(_BY_HOLDS, hold_ids)
        return [(RedemptionRow(*row[:8]), list(row[8])) for row in rows]

    async def taken(self, offer_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Each offer's stock taken: redemptions whose hold is pending or captured. One
        statement."""
        if not offer_ids:
            return {}
        rows = await self.session.execute(
            select(Redemption.offer_id, func.count())
            .where(Redemption.offer_id.in_(offer_ids), _LIVE_HOLD)
            .group_by(Redemption.offer_id)
        )
        return {offer_id: int(n) for offer_id, n in rows if offer_id is not None}

    async def redemptions_of(self, participant_id: uuid.UUID) -> list[RedemptionRecord]:
        rows = await self.session.execute(
            select(
                Redemption.id,
                Redemption.merchant_id,
                Redemption.offer_id,
                Redemption.points,
                Redemption.created_at,
            )
            .where(Redemption.participant_id == participant_id)
            .order_by(Redemption.created_at, Redemption.id)
        )
        return [RedemptionRecord(*row) for row in rows]

    async def codes_of(self, participant_id: uuid.UUID) -> list[RedemptionCodeRecord]:
        rows = await self.session.execute(
            select(RedemptionToken.created_at, RedemptionToken.expires_at, RedemptionToken.used_at)
            .where(RedemptionToken.participant_id == participant_id)
            .order_by(RedemptionToken.created_at, RedemptionToken.token_hash)
        )
        return [RedemptionCodeRecord(*row) for row in rows]

    async def delete_codes_of(self, participant_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(RedemptionToken).where(RedemptionToken.participant_id == participant_id)
        )
