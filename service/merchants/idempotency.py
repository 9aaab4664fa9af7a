"""Stripe's `Idempotency-Key` semantics for merchant calls.

* The first request with a key records it (committed at once, so concurrent requests see
  it) and runs; its response is stored in the same transaction as its work.
* A replay with the same body gets the stored response, status and all.
* The same key with a different body is rejected (`idempotency-key-reused`).
* A request arriving while the first is still running gets `409 request-in-progress`.
* A request that fails with a client error stores that error (a replay returns it); one
  that fails unexpectedly stores nothing and frees the key, since nothing was committed.
  A key left in progress by a crashed process is taken over after `LEASE`.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.errors import PROBLEM_MEDIA_TYPE, ProblemError
from service.merchants.errors import (
    IdempotencyKeyMissingError,
    IdempotencyKeyReusedError,
    RequestInProgressError,
)
from service.models import IdempotencyKey

LEASE = timedelta(seconds=60)
# Visible ASCII, 1 to 255 characters (the column's length): what a till can be trusted to echo.
KEY_PATTERN = r"^[\x21-\x7E]{1,255}$"
_KEY = re.compile(KEY_PATTERN)


def _fingerprint(operation: str, path: str, body: Any) -> bytes:
    return hashlib.sha256(
        orjson.dumps([operation, path, body], option=orjson.OPT_SORT_KEYS)
    ).digest()


async def run_idempotent(
    request: Request,
    session: AsyncSession,
    merchant_id: uuid.UUID,
    key: str | None,
    operation: str,
    body: Any,
    work: Callable[[], Awaitable[BaseModel]],
    *,
    status_code: int = 200,
) -> Response:
    if not key or not _KEY.fullmatch(key):
        raise IdempotencyKeyMissingError(
            "send an Idempotency-Key header of 1 to 255 visible ASCII characters"
        )
    fingerprint = _fingerprint(operation, request.url.path, body)
    sessionmaker = request.app.state.sessionmaker
    async with sessionmaker() as claim, claim.begin():
        # `locked_at` doubles as this request's lease: only its holder may record a result.
        lease = await claim.scalar(
            insert(IdempotencyKey)
            .values(
                merchant_id=merchant_id,
                key=key,
                request_hash=fingerprint,
                state="in_progress",
                locked_at=func.clock_timestamp(),
            )
            .on_conflict_do_nothing()
            .returning(IdempotencyKey.locked_at)
        )
        if lease is None:
            stored = await claim.scalar(
                select(IdempotencyKey)
                .where(IdempotencyKey.merchant_id == merchant_id, IdempotencyKey.key == key)
                .with_for_update()
            )
            assert stored is not None
            if stored.request_hash != fingerprint:
                raise IdempotencyKeyReusedError(
                    "this Idempotency-Key was used for a different request"
                )
            if stored.state == "done":
                return Response(
                    orjson.dumps(stored.response_body),
                    status_code=stored.response_status or 200,
                    media_type=(
                        PROBLEM_MEDIA_TYPE
                        if (stored.response_status or 200) >= 400
                        else "application/json"
                    ),
                    headers={"idempotent-replayed": "true"},
                )
            if stored.locked_at > datetime.now(UTC) - LEASE:
                raise RequestInProgressError("retry when the first request has finished")
            lease = await claim.scalar(
                update(IdempotencyKey)
                .where(IdempotencyKey.merchant_id == merchant_id, IdempotencyKey.key == key)
                .values(locked_at=func.clock_timestamp())
                .returning(IdempotencyKey.locked_at)
            )
    mine = (
        (IdempotencyKey.merchant_id == merchant_id)
        & (IdempotencyKey.key == key)
        & (IdempotencyKey.state == "in_progress")
        & (IdempotencyKey.locked_at == lease)
    )
    try:
        result = await work()
    except ProblemError as error:
        await session.rollback()
        async with sessionmaker() as store, store.begin():
            await store.execute(
                update(IdempotencyKey)
                .where(mine)
                .values(
                    state="done", response_status=error.status, response_body=error.to_problem()
                )
            )
        raise
    except BaseException:
        async with sessionmaker() as cleanup, cleanup.begin():
            await cleanup.execute(delete(IdempotencyKey).where(mine))
        raise
    payload = result.model_dump(mode="json")
    recorded = await session.scalar(
        update(IdempotencyKey)
        .where(mine)
        .values(state="done", response_status=status_code, response_body=payload)
        .returning(IdempotencyKey.key)
    )
    if recorded is None:
        # Our lease was taken over (we ran past LEASE): roll our work back rather than
        # commit a result the key no longer vouches for.
        raise RequestInProgressError("this request ran too long and was superseded by a retry")
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")
