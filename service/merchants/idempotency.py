"""Stripe's `Idempotency-Key` semantics for merchant calls.

* The first request with a key claims it in its own transaction, before its work: the key's
  row is inserted first, under the table's primary key. Its response is stored in the same
  transaction as its work, so a key is never left claimed by work that did not commit.
* A replay with the same body gets the stored response, status and all.
* The same key with a different body is rejected (`idempotency-key-reused`).
* A request arriving while the first is still running waits for it at the claim (the
  primary key's insert waits for the first transaction) and then replays its response; if
  the first rolled back, it runs itself.
* A request that fails with a client error stores that error (a replay returns it); one
  that fails unexpectedly stores nothing, since nothing was committed.
* A key stored `in_progress` by an earlier release (which claimed keys in a transaction of
  their own) is taken over after `LEASE`; before that, `409 request-in-progress`.

The claim costs no round trips of its own: it is the first statement of the request's
transaction, and the response is recorded by the last.
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
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.exc import DBAPIError
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
# Every merchant call runs the claim and the record: plain SQL built once (the ORM's bulk
# insert and update machinery cost more Python than their round trips).
#
# The claim also bounds every lock wait of the request's transaction (`lock_timeout`, local to
# it): a duplicate arriving while the first request runs waits at the claim at most
# `LOCK_WAIT`, then gets `409 request-in-progress`, so a till retrying in a loop cannot park
# one connection per retry; any later lock wait past it is a 503 (busy: retry after a moment).
LOCK_WAIT = "5s"
_CLAIM = text(
    """
    WITH bounded AS (SELECT set_config('lock_timeout', :lock_wait, true))
    INSERT INTO idempotency_keys (merchant_id, key, request_hash, state, locked_at)
    SELECT :merchant_id, :key, :request_hash, 'in_progress', clock_timestamp() FROM bounded
    ON CONFLICT DO NOTHING
    RETURNING locked_at
    """
)
_LOCK_NOT_AVAILABLE = "55P03"
_RECORD = text(
    """
    UPDATE idempotency_keys
    SET state = 'done', response_status = :status, response_body = :body
    WHERE merchant_id = :merchant_id AND key = :key AND state = 'in_progress'
      AND locked_at = :lease
    RETURNING key
    """
).bindparams(bindparam("body", type_=JSONB))


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
    try:
        lease = await session.scalar(
            _CLAIM,
            {
                "merchant_id": merchant_id,
                "key": key,
                "request_hash": fingerprint,
                "lock_wait": LOCK_WAIT,
            },
        )
    except DBAPIError as exc:
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if code != _LOCK_NOT_AVAILABLE:
            raise
        raise RequestInProgressError("retry when the first request has finished") from None
    if lease is None:  # stored and committed (a concurrent first request was waited for)
        stored = await session.scalar(
            select(IdempotencyKey)
            .where(IdempotencyKey.merchant_id == merchant_id, IdempotencyKey.key == key)
            .with_for_update()
        )
        assert stored is not None
        if stored.request_hash != fingerprint:
            raise IdempotencyKeyReusedError("this Idempotency-Key was used for a different request")
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
        lease = await session.scalar(
            update(IdempotencyKey)
            .where(IdempotencyKey.merchant_id == merchant_id, IdempotencyKey.key == key)
            .values(locked_at=func.clock_timestamp())
            .returning(IdempotencyKey.locked_at)
        )
    try:
        result = await work()
    except ProblemError as error:
        # The work and the claim roll back together; the error is then stored on its own,
        # unless another request with this key has claimed it meanwhile.
        await session.rollback()
        async with request.app.state.sessionmaker() as store, store.begin():
            stored_error = {
                "state": "done",
                "response_status": error.status,
                "response_body": error.to_problem(),
            }
            statement = insert(IdempotencyKey).values(
                merchant_id=merchant_id,
                key=key,
                request_hash=fingerprint,
                locked_at=func.clock_timestamp(),
                **stored_error,
            )
            await store.execute(
                statement.on_conflict_do_update(
                    index_elements=[IdempotencyKey.merchant_id, IdempotencyKey.key],
                    set_=stored_error,
                    where=(IdempotencyKey.state == "in_progress")
                    & (IdempotencyKey.request_hash == fingerprint)
                    & (IdempotencyKey.locked_at < func.clock_timestamp() - LEASE),
                )
            )
        raise
    payload = result.model_dump(mode="json")
    recorded = await session.scalar(
        _RECORD,
        {
            "merchant_id": merchant_id,
            "key": key,
            "lease": lease,
            "status": status_code,
            "body": payload,
        },
    )
    if recorded is None:
        # Our lease was taken over (a stale key we took over was taken over again): roll
        # our work back rather than commit a result the key no longer vouches for.
        raise RequestInProgressError("this request ran too long and was superseded by a retry")
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")
