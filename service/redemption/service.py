"""Redemption tokens: what the app shows at a till, and what a merchant exchanges for a hold."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.errors import ProblemError
from service.models import RedemptionToken

TOKEN_LIFETIME = timedelta(minutes=2)


class RedemptionTokenInvalidError(ProblemError):
    status = 422
    slug = "redemption-token-invalid"
    title = "Redemption token unknown, used or expired"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_token(
    session: AsyncSession, participant_id: uuid.UUID, *, now: datetime
) -> IssuedToken:
    """A fresh single-use token; only its hash is kept."""
    token = "rt_" + secrets.token_urlsafe(24)
    expires_at = now + TOKEN_LIFETIME
    await session.execute(
        insert(RedemptionToken).values(
            token_hash=_hash(token), participant_id=participant_id, expires_at=expires_at
        )
    )
    return IssuedToken(token, expires_at)


_CONSUME = text(
    """
    UPDATE redemption_tokens SET used_at = :now
    WHERE token_hash = :token_hash AND used_at IS NULL AND expires_at > :now
    RETURNING participant_id
    """
)


async def consume_token(session: AsyncSession, token: str, *, now: datetime) -> uuid.UUID:
    """The participant behind a token, marking it used: exactly one caller ever gets it."""
    participant_id: uuid.UUID | None = await session.scalar(
        _CONSUME, {"now": now, "token_hash": _hash(token)}
    )
    if participant_id is None:
        raise RedemptionTokenInvalidError("ask the customer to show a fresh code")
    return participant_id
