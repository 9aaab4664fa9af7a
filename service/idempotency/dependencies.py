"""Stripe's `Idempotency-Key` semantics, as a dependency any endpoint can opt into:

    async def endpoint(..., idempotency: Idempotent) -> Response:
        return await idempotency.run(owner_id, "operation", body, work, status_code=201)

* The first request with a key claims it before its work: the key's row is the first insert
  of the request's transaction, under the table's primary key. Its response is stored in the
  same transaction as its work, so a key is never left claimed by work that did not commit.
* A replay with the same body gets the stored response, status and all.
* The same key with a different body is rejected (`idempotency-key-reused`).
* A request arriving while the first is still running waits for it at the claim (the
  primary key's insert waits for the first transaction) and then replays its response; if
  the first rolled back, it runs itself. It waits at most `LOCK_WAIT`, then gets `409
  request-in-progress`.
* A request that fails with a client error stores that error (a replay returns it); one
  that fails unexpectedly stores nothing, since nothing was committed.
* A key stored `in_progress` by an earlier release (which claimed keys in a transaction of
  their own) is taken over after `LEASE`; before that, `409 request-in-progress`.

The transaction boundary: the request's session (`DbSession`) is the transaction, committed
when the endpoint returns. The claim is its first statement and the record its last, so the
machinery costs no round trips of its own. On a client error (`ProblemError`) from the work,
`run` rolls that transaction back, stores the error in a second transaction on the same
session, commits it, and re-raises; nothing else touches the session.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel

from service.db import DbSession
from service.errors import PROBLEM_MEDIA_TYPE, ProblemError
from service.i18n import _
from service.idempotency.errors import (
    IdempotencyKeyMissingError,
    IdempotencyKeyReusedError,
    RequestInProgressError,
)
from service.idempotency.repository import (
    KEY_PATTERN,
    ClaimWaitedTooLong,
    IdempotencyRepository,
)

LEASE = timedelta(seconds=60)
_KEY = re.compile(KEY_PATTERN)


def _fingerprint(operation: str, path: str, body: Any) -> bytes:
    return hashlib.sha256(
        orjson.dumps([operation, path, body], option=orjson.OPT_SORT_KEYS)
    ).digest()


@dataclass(slots=True)
class Idempotency:
    """One request's Idempotency-Key, bound to its session and path."""

    session: Any  # AsyncSession
    path: str
    key: str | None

    async def run(
        self,
        owner: uuid.UUID,
        operation: str,
        body: Any,
        work: Callable[[], Awaitable[BaseModel]],
        *,
        status_code: int = 200,
    ) -> Response:
        """Run `work` once for this key and `owner`, or replay what the key stored."""
        key = self.key
        if not key or not _KEY.fullmatch(key):
            raise IdempotencyKeyMissingError(
                _("send an Idempotency-Key header of 1 to 255 visible ASCII characters")
            )
        keys = IdempotencyRepository.from_session(self.session)
        fingerprint = _fingerprint(operation, self.path, body)
        try:
            lease = await keys.claim(owner, key, fingerprint)
        except ClaimWaitedTooLong:
            raise RequestInProgressError(_("retry when the first request has finished")) from None
        if lease is None:  # stored and committed (a concurrent first request was waited for)
            stored = await keys.stored(owner, key)
            if stored.request_hash != fingerprint:
                raise IdempotencyKeyReusedError(
                    _("this Idempotency-Key was used for a different request")
                )
            if stored.state == "done":
                status = stored.response_status or 200
                return Response(
                    orjson.dumps(stored.response_body),
                    status_code=status,
                    media_type=PROBLEM_MEDIA_TYPE if status >= 400 else "application/json",
                    headers={"idempotent-replayed": "true"},
                )
            if stored.locked_at > datetime.now(UTC) - LEASE:
                raise RequestInProgressError(_("retry when the first request has finished"))
            lease = await keys.take_over(owner, key)
        try:
            result = await work()
        except ProblemError as error:
            # The work and the claim roll back together; the error is then stored on its own,
            # unless another request with this key has claimed it meanwhile.
            await self.session.rollback()
            await keys.store_error(
                owner,
                key,
                fingerprint,
                status=error.status,
                problem=error.to_problem(),
                lease=LEASE,
            )
            await self.session.commit()
            raise
        body_json = orjson.dumps(result.model_dump(mode="json"))
        if not await keys.record(owner, key, lease, status_code, body_json.decode()):
            # Our lease was taken over (a stale key we took over was taken over again): roll
            # our work back rather than commit a result the key no longer vouches for.
            raise RequestInProgressError(
                _("this request ran too long and was superseded by a retry")
            )
        return Response(body_json, status_code=status_code, media_type="application/json")


async def _idempotency(
    request: Request,
    session: DbSession,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description=(
                "Required. A retry with the same key and body replays the stored response."
            ),
        ),
    ] = None,
) -> Idempotency:
    return Idempotency(session, request.url.path, idempotency_key)


Idempotent = Annotated[Idempotency, Depends(_idempotency)]
"""The request's Idempotency-Key (checked by `run`), on the request's own session."""
