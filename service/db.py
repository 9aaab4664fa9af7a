"""Async engine and the session-per-request dependency.

The request's session dependency owns the transaction: it commits when the
endpoint returns and rolls back when it raises. Services take the session as
their first argument and never commit. The commit happens before the response
is sent (`scope="function"`), so a 2xx is only ever sent for committed work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from service.embedded import to_sqlalchemy_url


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """One engine per process, created at start-up."""
    return create_async_engine(
        to_sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"server_settings": {"application_name": "carbon-points"}},
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


DbSession = Annotated[AsyncSession, Depends(_session, scope="function")]
"""The request's session; committed when the endpoint returns, rolled back if it raises."""

get_session = _session
