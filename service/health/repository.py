"""The readiness probe's one statement of its own: the database answers at all."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_PING = text("SELECT 1")


async def ping(engine: AsyncEngine) -> None:
    """One round trip on a fresh checkout; raises when PostgreSQL cannot be reached."""
    async with engine.connect() as connection:
        await connection.execute(_PING)
