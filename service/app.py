"""The ASGI application: `create_app()` and its lifespan.

Infrastructure (engine, Redis client, secrets, caches) is created once in the lifespan and
kept on `app.state`; endpoints reach it through the typed dependencies of
`service.dependencies`, `service.db` and the domains' own (`service.partners.auth`,
`service.crediting.dependencies`). Nothing is created at import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from service.accounts.endpoints import router as accounts_router
from service.admin.endpoints import router as admin_router
from service.config import Settings, get_settings
from service.console.endpoints import install_console
from service.crediting import flags
from service.crediting.dependencies import crediting_settings
from service.crediting.endpoints import router as crediting_router
from service.crediting.flags import FlagRulesCache
from service.crediting.group_commit import GroupCommitter
from service.db import (
    create_engine,
    create_read_pool,
    create_read_sessionmaker,
    create_sessionmaker,
)
from service.dev_secrets import load_secrets
from service.errors import install_error_handlers
from service.health.endpoints import router as health_router
from service.i18n import load_catalogues
from service.merchants.auth import MerchantKeyCache
from service.merchants.endpoints import router as merchant_router
from service.methodologies.service import RegistryCache
from service.metrics import watch_pool
from service.migrations import code_migrations
from service.observability import RequestContextMiddleware, configure_logging, get_logger
from service.openapi import install_openapi, operation_id
from service.participants.endpoints import privacy_router
from service.participants.endpoints import router as participant_router
from service.partners.auth import CredentialCache
from service.redemption.endpoints import catalogue_router
from service.redemption.endpoints import router as redemption_router
from service.redis import create_redis
from service.reductions.endpoints import public_router as registry_router
from service.reductions.endpoints import router as reductions_router
from service.reports.endpoints import router as reports_router
from service.review.endpoints import router as review_router

API_DESCRIPTION = """
carbon-points credits verified low-carbon actions under published, versioned
methodologies, keeps a tamper-evident points ledger, and lets merchants redeem.

Every error is an RFC 9457 problem document (`application/problem+json`) with a
stable `type` URI; every response carries an `x-request-id` header. While PostgreSQL
cannot be reached, requests get `503 service-unavailable` with `Retry-After`.

Lists take `cursor` and `limit` and answer `next_cursor` (null on the last page).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application. URLs must be resolved already (see `service.cli serve`)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.database_url is None or settings.redis_url is None:
            raise RuntimeError("create_app needs DATABASE_URL and REDIS_URL resolved")
        log = get_logger("carbon_points.app")
        load_catalogues()  # once here, so that no request reads a file
        app.state.settings = settings
        app.state.secrets = load_secrets(settings)
        app.state.engine = create_engine(
            settings.database_url, pool_size=settings.db_pool_size, pgbouncer=settings.db_pgbouncer
        )
        watch_pool(app.state.engine)
        app.state.sessionmaker = create_sessionmaker(app.state.engine)
        app.state.read_sessionmaker = create_read_sessionmaker(app.state.engine)
        app.state.read_pool = await create_read_pool(
            app.state.engine, size=settings.db_read_pool_size
        )
        app.state.redis = create_redis(settings.redis_url, cluster=settings.redis_cluster)
        app.state.shipped_migrations = code_migrations()
        app.state.partner_credentials = CredentialCache()
        app.state.merchant_keys = MerchantKeyCache()
        app.state.registry_cache = RegistryCache()
        app.state.flag_rules = FlagRulesCache()
        try:
            async with app.state.sessionmaker() as session:
                await app.state.flag_rules.refresh(session)
        except Exception:
            log.warning("flag rules not read at start-up", exc_info=True)
        flag_refresher = flags.start(app.state.flag_rules, app.state.sessionmaker)
        app.state.crediting_validity = timedelta(days=settings.points_validity_days)
        app.state.batch_slots = asyncio.Semaphore(settings.batch_concurrency)
        app.state.single_events = GroupCommitter(
            app.state.sessionmaker,
            lambda: crediting_settings(app),
            concurrency=settings.single_event_groups,
        )
        log.info("started", environment=settings.environment)
        try:
            yield
        finally:
            await flags.stop(flag_refresher)
            await app.state.single_events.drain()
            await app.state.redis.aclose()
            await app.state.read_pool.close()
            await app.state.engine.dispose()

    app = FastAPI(
        title="carbon-points",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    install_openapi(app)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    # Routes are matched in order, one pattern after another: the hot paths first (a
    # partner's events, a till's calls, the app's reads), so their requests try the fewest.
    app.include_router(crediting_router)
    app.include_router(redemption_router)
    app.include_router(participant_router)
    app.include_router(health_router)
    app.include_router(accounts_router)
    app.include_router(privacy_router)
    app.include_router(merchant_router)
    app.include_router(catalogue_router)
    app.include_router(admin_router)
    app.include_router(reports_router)
    install_console(app)  # the admin web console at /admin (HTML, not in the OpenAPI document)
    app.include_router(reductions_router)
    app.include_router(registry_router)
    app.include_router(review_router)
    return app


def create_app_from_environment() -> FastAPI:
    """Factory for uvicorn's workers: settings (with resolved URLs) from the environment."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
