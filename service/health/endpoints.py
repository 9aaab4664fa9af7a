"""Liveness, readiness and metrics: for load balancers and Prometheus, not for people."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from service import metrics as service_metrics
from service.dependencies import (
    Engine,
    MethodologyRegistry,
    RedisClient,
    SessionMaker,
    ShippedMigrations,
)
from service.errors import ServiceUnavailableError
from service.health import repository
from service.methodologies.service import uncovered
from service.migrations import current_revisions, migration_state
from service.observability import get_logger, metrics_payload
from service.partners.service import active_scopes

_log = get_logger("carbon_points.health")

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def check_liveness() -> dict[str, str]:
    return {"status": "ok"}


class Readiness(BaseModel):
    status: Literal["ready", "degraded"] = Field(
        description="`degraded`: ready, but an accelerator (Redis) is down; requests still work"
    )
    checks: dict[str, str] = Field(
        description="postgresql, migrations (current | ahead | behind), redis, methodologies"
    )


# Not ready without these; Redis only speeds the service up (replay cache, rate limits fail
# open), so an instance without it keeps serving and says so.
_REQUIRED = ("postgresql", "migrations", "methodologies")
_READY_VALUES = ("ok", "current", "ahead")


@router.get(
    "/readyz",
    summary="Readiness: PostgreSQL answers, the database is at or ahead of the code's"
    " migrations, and every action type a partner may send has a methodology in force",
    description="Ready (200) when PostgreSQL answers and the database is at the code's"
    " migration head or ahead of it (a newer release's expand step; see the expand/contract"
    " rule in docs/architecture.md). Redis down is `degraded`, still 200: every endpoint works"
    " without it. Otherwise 503 with the checks.",
    response_model=Readiness,
    responses={
        503: {
            "description": "PostgreSQL is down, migrations are behind, or an action"
            " type has no methodology in force"
        }
    },
)
async def check_readiness(
    engine: Engine,
    shipped: ShippedMigrations,
    redis: RedisClient,
    sessionmaker: SessionMaker,
    registry_cache: MethodologyRegistry,
) -> JSONResponse:
    checks: dict[str, str] = {}

    async def check_postgres() -> None:
        await repository.ping(engine)
        checks["migrations"] = migration_state(await current_revisions(engine), shipped)

    async def check_redis() -> None:
        await redis.ping()

    async def check_methodologies() -> None:
        # A partner allowed an action type with no methodology in force would have every
        # such event refused with `no-methodology`: not ready to credit.
        async with sessionmaker() as session:
            registry = await registry_cache.get(session)
            scopes = await active_scopes(session)
        missing = uncovered(registry, scopes, datetime.now(UTC))
        if missing:
            checks["methodologies"] = "none in force for " + ", ".join(missing)

    for name, probe in (
        ("postgresql", check_postgres),
        ("redis", check_redis),
        ("methodologies", check_methodologies),
    ):
        try:
            await asyncio.wait_for(probe(), timeout=2.0)
            checks.setdefault(name, "ok")
        except Exception as exc:  # a readiness probe reports, it does not raise
            checks[name] = f"unavailable: {type(exc).__name__}"
    if checks.get("postgresql") != "ok":
        checks.setdefault("migrations", "unknown")
    if all(checks.get(name) in _READY_VALUES for name in _REQUIRED):
        status = "ready" if checks["redis"] == "ok" else "degraded"
        return JSONResponse({"status": status, "checks": checks})
    error = ServiceUnavailableError("not ready", checks=checks)
    return JSONResponse(error.to_problem(), status_code=503, media_type="application/problem+json")


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(sessionmaker: SessionMaker) -> Response:
    try:
        await service_metrics.refresh_from_database(sessionmaker)
    except Exception as exc:  # the database's state is a bonus; the scrape still answers
        _log.warning("metrics: database state not read", error=type(exc).__name__)
    payload, content_type = metrics_payload()
    return Response(payload, media_type=content_type)
