"""The process's infrastructure, reached by endpoints through typed FastAPI dependencies.

The lifespan (`service.app`) creates each piece once and keeps it on `app.state`; these
functions are what reads it back, so an endpoint declares what it needs in its signature
(`redis: RedisClient`) instead of reaching into `request.app.state`. Each is read afresh per
request, so a test that swaps `app.state.redis` for a broken client is obeyed.

A domain's own caches sit beside their classes, for the same reason and in the same way:
`service.partners.auth.PartnerCredentials`, `service.crediting.dependencies`. The request's
database session and the read pool are in `service.db` (`DbSession`, `ReadSession`,
`AppReader`).

The functions are `async def` on purpose: FastAPI runs a plain `def` dependency in a
thread pool, which would cost a thread hop per request on the crediting hot path.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.config import Settings
from service.dev_secrets import Secrets
from service.errors import request_language
from service.methodologies.service import RegistryCache
from service.migrations import CodeMigrations
from service.redis import RedisClient as AnyRedis


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _secrets(request: Request) -> Secrets:
    secrets: Secrets = request.app.state.secrets
    return secrets


async def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def _sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


async def _redis(request: Request) -> AnyRedis:
    redis: AnyRedis = request.app.state.redis
    return redis


async def _shipped_migrations(request: Request) -> CodeMigrations:
    shipped: CodeMigrations = request.app.state.shipped_migrations
    return shipped


async def _registry_cache(request: Request) -> RegistryCache:
    cache: RegistryCache = request.app.state.registry_cache
    return cache


AppSettings = Annotated[Settings, Depends(_settings)]
"""The settings the app was created with."""

AppSecrets = Annotated[Secrets, Depends(_secrets)]
"""The server's secrets (partner key, identifier pepper, JWT signing key)."""

Engine = Annotated[AsyncEngine, Depends(_engine)]
"""The process's engine: for probes that need a bare connection, not a session."""

SessionMaker = Annotated[async_sessionmaker[AsyncSession], Depends(_sessionmaker)]
"""For work that must not share the request's transaction (a cache miss's own read)."""

RedisClient = Annotated[AnyRedis, Depends(_redis)]
"""The process's Redis client (one Redis or a cluster, `service.redis`): an accelerator, never
the source of truth."""

ShippedMigrations = Annotated[CodeMigrations, Depends(_shipped_migrations)]
"""The migrations this code ships, its heads among them (readiness compares the database's)."""

MethodologyRegistry = Annotated[RegistryCache, Depends(_registry_cache)]
"""The methodology registry cache (`await registry.get(session)`)."""


async def _language(request: Request, response: Response) -> str:
    language = request_language(request)
    response.headers["content-language"] = language
    return language


# The language the caller reads (`Accept-Language`, else its API's default: zh-CN for the app),
# announced in the response's `Content-Language`. For endpoints whose answer has words in it.
Language = Annotated[str, Depends(_language)]
