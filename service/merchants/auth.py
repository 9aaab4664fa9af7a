"""Merchant API keys: `Authorization: Bearer cpmk_<key id>_<secret>`, scoped, hashed at rest."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.cache import TtlCache
from service.i18n import _
from service.merchants.errors import (
    MerchantKeyInvalidError,
    MerchantSuspendedError,
    ScopeMissingError,
)
from service.merchants.repository import MerchantRepository
from service.models import Merchant, MerchantApiKey

SCOPES = ("redeem", "refund", "settlement")
PREFIX = "cpmk_"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key_id: str
    token: str


@dataclass(frozen=True, slots=True)
class MerchantContext:
    merchant_id: uuid.UUID
    code: str
    terminal_id: uuid.UUID | None
    scopes: frozenset[str]
    key_id: str

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise ScopeMissingError(_("this key lacks the %(scope)s scope", scope=repr(scope)))


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def issue_key(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    scopes: list[str],
    terminal_id: uuid.UUID | None = None,
) -> IssuedKey:
    """A new key; the token is shown once and only its hash is stored."""
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise ScopeMissingError(f"scopes are {', '.join(SCOPES)}")
    key_id = "mk_" + secrets.token_hex(10)
    secret = secrets.token_urlsafe(32)
    await MerchantRepository.from_session(session).add(
        MerchantApiKey(
            key_id=key_id,
            merchant_id=merchant_id,
            terminal_id=terminal_id,
            scopes=sorted(set(scopes)),
            secret_hash=_digest(secret),
        )
    )
    return IssuedKey(key_id, f"{PREFIX}{key_id}_{secret}")


_CACHE_SECONDS = 5.0


class MerchantKeyCache(TtlCache[str, tuple[MerchantApiKey, Merchant]]):
    """Key id -> (key, merchant) rows for a few seconds, as partner credentials are: every
    till call checks its key, and a revocation or a suspension takes effect within
    `_CACHE_SECONDS`. The secret is still compared on every request."""

    def __init__(self) -> None:
        super().__init__(_CACHE_SECONDS)

    async def get(
        self, sessionmaker: async_sessionmaker[AsyncSession], key_id: str
    ) -> tuple[MerchantApiKey, Merchant] | None:
        async def load(key_id: str) -> tuple[MerchantApiKey, Merchant] | None:
            async with sessionmaker() as session:
                return await MerchantRepository.from_session(session).key_with_merchant(key_id)

        return await self.get_or_load(key_id, load)


async def _merchant_key_cache(request: Request) -> MerchantKeyCache:
    cache: MerchantKeyCache = request.app.state.merchant_keys
    return cache


MerchantKeys = Annotated[MerchantKeyCache, Depends(_merchant_key_cache)]
"""The process's merchant key cache (clear it when a key or a merchant's status changes)."""


async def authenticate_merchant(request: Request) -> MerchantContext:
    header = request.headers.get("authorization", "")
    scheme, _space, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.startswith(PREFIX):
        raise MerchantKeyInvalidError(_("send Authorization: Bearer cpmk_..."))
    # `mk_<letters and digits>` then `_` then the secret (which may itself contain `_`).
    rest = token[len(PREFIX) :]
    split = rest.find("_", 3)
    key_id, secret = rest[:split], rest[split + 1 :]
    if not rest.startswith("mk_") or split < 0 or not secret:
        raise MerchantKeyInvalidError(_("malformed merchant key"))
    keys: MerchantKeyCache = request.app.state.merchant_keys
    row = await keys.get(request.app.state.read_sessionmaker, key_id)
    if row is None:
        raise MerchantKeyInvalidError(_("unknown merchant key"))
    key, merchant = row
    if key.revoked_at is not None or not hmac.compare_digest(key.secret_hash, _digest(secret)):
        raise MerchantKeyInvalidError(_("unknown or revoked merchant key"))
    if merchant.status != "active":
        raise MerchantSuspendedError(_("this merchant is suspended"))
    # The request's log line names its caller (by id).
    structlog.contextvars.bind_contextvars(merchant_id=str(merchant.id), merchant_key=key_id)
    return MerchantContext(
        merchant.id, merchant.code, key.terminal_id, frozenset(key.scopes), key_id
    )


MerchantKey = Annotated[MerchantContext, Depends(authenticate_merchant)]
