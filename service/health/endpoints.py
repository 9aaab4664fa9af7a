"""Liveness, readiness and metrics: for load balancers and Prometheus, not for people."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from service.dependencies import (
    Engine,
    MethodologyRegistry,
    MigrationHeads,
    RedisClient,
    SessionMaker,
)
from service.errors import ServiceUnavailableError
from service.health import repository
from service.methodologies.service import uncovered
from service.migrations import current_revisions
from service.observability import metrics_payload
from service.partners.service import active_scopes

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def check_liveness() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: PostgreSQL and Redis answer, migrations are current, and every action"
    " type a partner may send has a methodology in force",
    responses={503: {"description": "A dependency is down or migrations are behind"}},
)
async def check_readiness(
    engine: Engine,
    heads: MigrationHeads,
    redis: RedisClient,
    sessionmaker: SessionMaker,
    registry_cache: MethodologyRegistry,
) -> JSONResponse:
    checks: dict[str, Any] = {}

    async def check_postgres() -> None:
        await repository.ping(engine)
        current = await current_revisions(engine)
        checks["migrations"] = "current" if current == heads else "behind"

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
    if all(value in ("ok", "current") for value in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    error = ServiceUnavailableError("not ready", checks=checks)
    return JSONResponse(error.to_problem(), status_code=503, media_type="application/problem+json")


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics() -> Response:
    payload, content_type = metrics_payload()
    return Response(payload, media_type=content_type)
