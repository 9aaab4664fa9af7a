"""Authentication of partner requests: HMAC signatures, replay protection, rate limits.

The signature scheme is the one `integrations` signs with (one implementation of the
signed content for both sides). Redis backs the replay cache and the rate limits and
only those: when Redis is unreachable both fail open, with a warning in the logs. That
is safe because events are idempotent per (partner, external id): a replayed request
can never credit twice, and PostgreSQL, not Redis, decides what is credited.
"""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import structlog
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from integrations import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_ID_HEADER,
    hmac_signature,
    signed_content,
)
from service import metrics
from service.cache import TtlCache
from service.errors import PayloadTooLargeError, RateLimitedError
from service.observability import get_logger
from service.partners.credentials import derive_secret
from service.partners.errors import (
    BadSignatureError,
    PartnerSuspendedError,
    ReplayedRequestError,
    RevokedKeyError,
    SignatureMissingError,
    StaleTimestampError,
    UnknownKeyError,
)
from service.partners.repository import PartnerRepository
from service.redis import RedisClient, key

TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 4 * 1024 * 1024
_CACHE_SECONDS = 5.0
_log = get_logger("carbon_points.partners.auth")


@dataclass(frozen=True, slots=True)
class PartnerContext:
    partner_id: uuid.UUID
    code: str
    kind: str
    allowed_action_types: frozenset[str]
    region: str | None
    rate_limit_per_second: int
    key_id: str


@dataclass(frozen=True, slots=True)
class _Credential:
    partner: PartnerContext
    secret: str
    active: bool
    expires_at: datetime | None
    revoked: bool


class CredentialCache(TtlCache[str, _Credential]):
    """Key id -> credential, for a few seconds: a revocation takes effect within that."""

    def __init__(self) -> None:
        super().__init__(_CACHE_SECONDS)

    async def get(
        self, sessionmaker: async_sessionmaker[AsyncSession], partner_key: str, key_id: str
    ) -> _Credential | None:
        async def load(key_id: str) -> _Credential | None:
            async with sessionmaker() as session:
                row = await PartnerRepository.from_session(session).credential_with_partner(key_id)
            if row is None:
                return None
            stored, partner = row
            return _Credential(
                PartnerContext(
                    partner.id,
                    partner.code,
                    partner.kind,
                    frozenset(partner.allowed_action_types),
                    partner.region,
                    partner.rate_limit_per_second,
                    key_id,
                ),
                derive_secret(partner_key, key_id, stored.salt),
                partner.status == "active",
                stored.expires_at,
                stored.revoked_at is not None,
            )

        return await self.get_or_load(key_id, load)


async def _credential_cache(request: Request) -> CredentialCache:
    cache: CredentialCache = request.app.state.partner_credentials
    return cache


PartnerCredentials = Annotated[CredentialCache, Depends(_credential_cache)]
"""The process's credential cache (created once, in the lifespan)."""


@dataclass(frozen=True, slots=True)
class PartnerGate:
    """What checking a signed request needs, as ONE dependency: on the crediting hot path each
    FastAPI dependency costs about 9 µs of CPU to solve, so four would add ~35 µs to every
    event (the Python work of a single event is ~300 µs, docs/performance.md)."""

    credentials: CredentialCache
    sessionmaker: async_sessionmaker[AsyncSession]
    partner_key: str
    redis: RedisClient


async def _partner_gate(request: Request) -> PartnerGate:
    state = request.app.state  # read per request: a test may swap the Redis client
    return PartnerGate(
        state.partner_credentials, state.sessionmaker, state.secrets.partner_secret_key, state.redis
    )


PartnerGateDependency = Annotated[PartnerGate, Depends(_partner_gate)]


@dataclass(frozen=True, slots=True)
class SignedRequest:
    partner: PartnerContext
    body: bytes
    received_at: datetime


async def authenticate_partner(request: Request, gate: PartnerGateDependency) -> SignedRequest:
    """Verify the request's signature, freshness and uniqueness; apply the rate limit."""
    headers = request.headers
    key_id = headers.get(KEY_ID_HEADER)
    webhook_id = headers.get(WEBHOOK_ID_HEADER)
    timestamp_text = headers.get(TIMESTAMP_HEADER)
    signatures = headers.get(SIGNATURE_HEADER)
    if not (key_id and webhook_id and timestamp_text and signatures):
        raise SignatureMissingError(
            f"send {KEY_ID_HEADER}, {WEBHOOK_ID_HEADER}, {TIMESTAMP_HEADER} "
            f"and {SIGNATURE_HEADER}; see the README's partner signing scheme"
        )
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"bodies are limited to {MAX_BODY_BYTES} bytes")
    now = datetime.now(UTC)
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        raise StaleTimestampError("webhook-timestamp must be Unix seconds") from None
    if abs(now.timestamp() - timestamp) > TOLERANCE_SECONDS:
        raise StaleTimestampError(
            f"timestamp is more than {TOLERANCE_SECONDS} s from the server's clock"
        )

    credential = await gate.credentials.get(gate.sessionmaker, gate.partner_key, key_id)
    if credential is None:
        raise UnknownKeyError(f"no key {key_id}")
    if credential.revoked or (credential.expires_at is not None and credential.expires_at <= now):
        raise RevokedKeyError(f"key {key_id} is revoked or past its rotation overlap")

    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"bodies are limited to {MAX_BODY_BYTES} bytes")
    target = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    path = target.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")
    try:
        content = signed_content(
            key_id=key_id,
            webhook_id=webhook_id,
            timestamp=timestamp,
            method=request.method,
            path=path,
            body=body,
        )
    except (ValueError, TypeError):
        raise BadSignatureError("malformed signature headers") from None
    expected = hmac_signature(credential.secret.encode(), content)
    if not any(hmac.compare_digest(expected, offered) for offered in signatures.split()):
        raise BadSignatureError("no v1 signature matches the request")
    if not credential.active:
        raise PartnerSuspendedError("this partner is suspended")

    await _replay_and_rate(gate.redis, key_id, webhook_id, credential.partner)
    # The request's log line names its caller (by id: never a card or account number).
    structlog.contextvars.bind_contextvars(partner_id=str(credential.partner.partner_id))
    return SignedRequest(credential.partner, body, now)


async def _replay_and_rate(
    redis: RedisClient, key_id: str, webhook_id: str, partner: PartnerContext
) -> None:
    """The replay cache and the rate limit in one Redis round trip (a pipeline): both keys
    carry the partner's hash tag, so on a Redis Cluster too they are one node's."""
    window = int(time.time())
    tag = f"partner:{partner.partner_id}"
    rate_key = key(tag, "rate", window)
    try:
        pipe = redis.pipeline(transaction=False)
        pipe.set(key(tag, "replay", key_id, webhook_id), b"1", nx=True, ex=2 * TOLERANCE_SECONDS)
        pipe.incr(rate_key)
        pipe.expire(rate_key, 2)
        fresh, count, _ = await pipe.execute()
    except Exception as exc:  # Redis is an accelerator, never a gate to correctness
        _log.warning(
            "replay cache and rate limiter unavailable; accepting", error=type(exc).__name__
        )
        return
    if not fresh:
        raise ReplayedRequestError(f"webhook-id {webhook_id} was already used")
    if int(count) > partner.rate_limit_per_second:
        metrics.RATE_LIMITED.labels(partner.code).inc()
        error = RateLimitedError(
            f"more than {partner.rate_limit_per_second} requests in one second"
        )
        error.headers["retry-after"] = "1"
        raise error


PartnerRequest = Annotated[SignedRequest, Depends(authenticate_partner)]
