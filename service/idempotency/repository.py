"""All of the `idempotency_keys` table's SQL. Functions never commit.

The claim is the first statement of the request's transaction and goes through the session
(it is what begins the transaction); the record, the last, goes straight to the driver
(`service.db.driver`): both run on every idempotent call.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import asyncpg
from sqlalchemy import Table, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import driver
from service.models import IdempotencyKey

# Visible ASCII, 1 to 255 characters (the column's length): what a till can be trusted to echo.
KEY_PATTERN = r"^[\x21-\x7E]{1,255}$"
# The claim also bounds every lock wait of the request's transaction (`lock_timeout`, local to
# it): a duplicate arriving while the first request runs waits at the claim at most
# `LOCK_WAIT`, then gets `409 request-in-progress`, so a client retrying in a loop cannot park
# one connection per retry; any later lock wait past it is a 503 (busy: retry after a moment).
LOCK_WAIT = "5s"
_LOCK_NOT_AVAILABLE = "55P03"
_CLAIM = text(
    """
    WITH bounded AS (SELECT set_config('lock_timeout', :lock_wait, true))
    INSERT INTO idempotency_keys (merchant_id, key, request_hash, state, locked_at)
    SELECT :merchant_id, :key, :request_hash, 'in_progress', clock_timestamp() FROM bounded
    ON CONFLICT DO NOTHING
    RETURNING locked_at
    """
)
_RECORD = """
    UPDATE idempotency_keys
    SET state = 'done', response_status = $1, response_body = CAST($2 AS jsonb)
    WHERE merchant_id = $3 AND key = $4 AND state = 'in_progress' AND locked_at = $5
    RETURNING key
"""
_keys = cast(Table, IdempotencyKey.__table__)


class ClaimWaitedTooLong(Exception):
    """Another request holding this key did not finish within `LOCK_WAIT`."""


@dataclass(frozen=True, slots=True)
class StoredKey:
    request_hash: bytes
    state: str
    response_status: int | None
    response_body: Any
    locked_at: datetime


class IdempotencyRepository:
    """The `idempotency_keys` table, for one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> IdempotencyRepository:
        return cls(session)

    async def claim(self, owner: uuid.UUID, key: str, fingerprint: bytes) -> datetime | None:
        """Insert the key `in_progress` and return its lease (its `locked_at`); None when
        the key exists (a concurrent first request is waited for, up to `LOCK_WAIT`)."""
        try:
            lease: datetime | None = await self.session.scalar(
                _CLAIM,
                {
                    "merchant_id": owner,
                    "key": key,
                    "request_hash": fingerprint,
                    "lock_wait": LOCK_WAIT,
                },
            )
        except DBAPIError as exc:
            code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
            if code != _LOCK_NOT_AVAILABLE:
                raise
            raise ClaimWaitedTooLong from None
        return lease

    async def stored(self, owner: uuid.UUID, key: str) -> StoredKey:
        """The key's row, locked (it exists: the claim found it)."""
        row = (
            await self.session.execute(
                select(
                    _keys.c.request_hash,
                    _keys.c.state,
                    _keys.c.response_status,
                    _keys.c.response_body,
                    _keys.c.locked_at,
                )
                .where(_keys.c.merchant_id == owner, _keys.c.key == key)
                .with_for_update()
            )
        ).one()
        return StoredKey(*row)

    async def take_over(self, owner: uuid.UUID, key: str) -> datetime:
        """A new lease on a key whose holder's lease ran out."""
        lease: datetime | None = await self.session.scalar(
            update(_keys)
            .where(_keys.c.merchant_id == owner, _keys.c.key == key)
            .values(locked_at=func.clock_timestamp())
            .returning(_keys.c.locked_at)
        )
        assert lease is not None
        return lease

    async def record(
        self, owner: uuid.UUID, key: str, lease: datetime, status: int, body: str
    ) -> bool:
        """Store the response (`body`: JSON text) under the key if our lease still holds it;
        False when it was taken over meanwhile. One statement, on the driver."""
        connection: asyncpg.Connection = await driver(self.session)
        recorded = await connection.fetchval(_RECORD, status, body, owner, key, lease)
        return recorded is not None

    async def store_error(
        self,
        owner: uuid.UUID,
        key: str,
        fingerprint: bytes,
        *,
        status: int,
        problem: dict[str, Any],
        lease: timedelta,
    ) -> None:
        """Store a client error under the key (its own transaction, after the work's was
        rolled back), unless another request has claimed the key meanwhile."""
        stored_error = {"state": "done", "response_status": status, "response_body": problem}
        statement = insert(_keys).values(
            merchant_id=owner,
            key=key,
            request_hash=fingerprint,
            locked_at=func.clock_timestamp(),
            **stored_error,
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[_keys.c.merchant_id, _keys.c.key],
                set_=stored_error,
                where=(_keys.c.state == "in_progress")
                & (_keys.c.request_hash == fingerprint)
                & (_keys.c.locked_at < func.clock_timestamp() - lease),
            )
        )
