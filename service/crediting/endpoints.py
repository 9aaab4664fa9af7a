"""The partner API: signed requests only (see `service.partners.auth`)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from service import metrics
from service.crediting import service
from service.crediting.dependencies import Crediting
from service.crediting.schemas import (
    EXTERNAL_ID_PATTERN,
    BatchOut,
    EventIn,
    OutcomeOut,
    OutcomePage,
    RetractionIn,
)
from service.db import DbSession
from service.errors import (
    BadRequestError,
    MalformedBodyError,
    PayloadTooLargeError,
    ProblemError,
    ValidationProblem,
)
from service.fields import CURSOR_PATTERN, Cursor
from service.partners.auth import PartnerRequest

MAX_BATCH = 1000
router = APIRouter(prefix="/v1/partner", tags=["partner-events"])

_SIGNED: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, stale, replayed or wrong signature; unknown or revoked key"},
    403: {"description": "Partner suspended, or action type not allowed"},
    429: {"description": "Rate limit exceeded (see Retry-After)"},
}


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBodyError(f"the body could not be parsed as JSON: {exc}") from None


def _validation_problem(exc: ValidationError, prefix: tuple[str, ...] = ()) -> ValidationProblem:
    # Values are never echoed: they may hold card numbers.
    errors = [
        {
            "location": [*prefix, *(str(part) for part in error["loc"])],
            "message": error["msg"],
            "code": error["type"],
        }
        for error in exc.errors(include_input=False, include_url=False)
    ]
    return ValidationProblem(f"{len(errors)} field(s) failed validation", errors=errors)


def _parse_event(raw: Any, prefix: tuple[str, ...]) -> EventIn | tuple[str | None, ProblemError]:
    external_id = raw.get("external_id") if isinstance(raw, dict) else None
    try:
        return EventIn.model_validate(raw)
    except ValidationError as exc:
        return (
            external_id if isinstance(external_id, str) else None,
            _validation_problem(exc, prefix),
        )


@router.post(
    "/events",
    summary="Submit one event",
    response_model=OutcomeOut,
    responses={**_SIGNED, 409: {"description": "External id reused with other content"}},
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": EventIn.model_json_schema()}},
            "required": True,
        }
    },
)
async def submit_event(
    signed: PartnerRequest,
    session: DbSession,
    request: Request,
    crediting: Crediting,
) -> Any:
    raw = _json(signed.body)
    if not isinstance(raw, dict):
        raise BadRequestError("the body must be one event object")
    parsed = _parse_event(raw, ("body",))
    registry = await crediting.registry_cache.get(session)
    # Give back the connection a cache refresh may have taken: the group commit needs one
    # from the same pool while this request waits for it.
    await session.commit()
    item = service.prepare(registry, crediting.settings, signed.partner, parsed, signed.received_at)
    # Committed with the other single events in flight, before this returns.
    outcome = item if isinstance(item, OutcomeOut) else await crediting.single_events.submit(item)
    metrics.count_outcomes(signed.partner.code, (outcome,))  # committed (or refused) by now
    if outcome.problem is not None:
        request_id = request.scope.get("state", {}).get("request_id")
        return Response(
            orjson.dumps({**outcome.problem, "request_id": request_id}),
            status_code=int(outcome.problem["status"]),
            media_type="application/problem+json",
        )
    return outcome


@router.post(
    "/event-batches",
    summary="Submit a batch of 1 to 1,000 events",
    response_model=BatchOut,
    responses=_SIGNED,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["events"],
                        "properties": {
                            "events": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": MAX_BATCH,
                                "items": EventIn.model_json_schema(),
                            }
                        },
                    }
                }
            },
            "required": True,
        }
    },
)
async def submit_event_batch(
    signed: PartnerRequest,
    session: DbSession,
    crediting: Crediting,
) -> BatchOut:
    raw = _json(signed.body)
    events = raw.get("events") if isinstance(raw, dict) else None
    if not isinstance(events, list) or not events:
        raise BadRequestError('the body must be {"events": [...]} with at least one event')
    if len(events) > MAX_BATCH:
        raise PayloadTooLargeError(f"at most {MAX_BATCH} events a batch, not {len(events)}")
    items = [_parse_event(item, ("events", str(i))) for i, item in enumerate(events)]
    registry = await crediting.registry_cache.get(session)
    await session.commit()  # no connection is held while waiting for a slot
    started = time.perf_counter()
    # A bounded number of batches at once per process: the others wait here, without a
    # database connection, so single events, app reads and tills are never starved of one.
    async with crediting.batch_slots:
        results = await service.ingest(
            session, registry, crediting.settings, signed.partner, items, signed.received_at
        )
        # Committed inside the slot: the next batch's locks wait for this one's commit anyway.
        await session.commit()
    metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
    metrics.BATCH_EVENTS.observe(len(items))
    metrics.count_outcomes(signed.partner.code, results)
    return BatchOut(results=results)


@router.get(
    "/events/{external_id}",
    summary="An event's outcome",
    response_model=OutcomeOut,
    responses={**_SIGNED, 404: {"description": "No such event from this partner"}},
)
async def get_event(
    external_id: Annotated[str, Path(pattern=EXTERNAL_ID_PATTERN)],
    signed: PartnerRequest,
    session: DbSession,
) -> OutcomeOut:
    return await service.get_outcome(session, signed.partner, external_id)


@router.get(
    "/outcomes",
    summary="Outcomes changed since a cursor, for reconciliation",
    response_model=OutcomePage,
    responses=_SIGNED,
)
async def list_outcomes(
    signed: PartnerRequest,
    session: DbSession,
    cursor: Cursor = None,
    after: Annotated[
        str | None,
        Query(
            pattern=CURSOR_PATTERN,
            deprecated=True,
            description="The former name of `cursor`, still accepted.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> OutcomePage:
    outcomes, next_cursor = await service.list_outcomes(
        session, signed.partner, int(cursor or after or 0), limit
    )
    return OutcomePage(
        outcomes=outcomes, next_cursor=str(next_cursor) if next_cursor is not None else None
    )


@router.post(
    "/events/{external_id}/retraction",
    summary="Retract an event: its credit is reversed through the ledger",
    response_model=OutcomeOut,
    responses={**_SIGNED, 404: {"description": "No such event from this partner"}},
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": RetractionIn.model_json_schema()}},
            "required": True,
        }
    },
)
async def retract_event(
    external_id: Annotated[str, Path(pattern=EXTERNAL_ID_PATTERN)],
    signed: PartnerRequest,
    session: DbSession,
    crediting: Crediting,
) -> OutcomeOut:
    try:
        body = RetractionIn.model_validate_json(signed.body or b"{}")
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise MalformedBodyError("the body could not be parsed as JSON") from None
        raise _validation_problem(exc, ("body",)) from None
    registry = await crediting.registry_cache.get(session)
    return await service.retract(session, registry, signed.partner, external_id, body.reason)
