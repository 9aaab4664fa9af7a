"""What every `carbon-points` command module shares: the servers, a session, clean errors.

The command modules (`service/<domain>/commands.py`, `service/webhooks/cli.py`) import this,
never `service.cli`, which only assembles their parsers and dispatches: so no import circle.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings, get_settings
from service.embedded import Servers, resolve_servers
from service.observability import get_logger

if TYPE_CHECKING:
    from service.errors import ProblemError

T = TypeVar("T")


def resolve_command_servers(settings: Settings) -> Servers:
    """`DATABASE_URL` and `REDIS_URL` when set, otherwise the embedded servers under the
    data dir; published in the environment for child processes."""
    servers = resolve_servers(settings)
    # Child processes (uvicorn workers, alembic) read the resolved URLs from here.
    os.environ["DATABASE_URL"] = servers.database_url
    os.environ["REDIS_URL"] = servers.redis_url
    # Settings were read before the URLs were known; an in-process uvicorn worker must
    # read them again, with the URLs.
    get_settings.cache_clear()
    get_logger("carbon_points.cli").info("servers", **servers.describe())
    return servers


def run_in_session(
    servers: Servers, work: Callable[[AsyncSession], Awaitable[T]], *, pool_size: int = 2
) -> T:
    """Run `work` in one transaction on a short-lived engine: committed when it returns,
    rolled back when it raises (the command owns the transaction, as a request does)."""
    from service.db import create_engine, create_sessionmaker

    async def run() -> T:
        engine = create_engine(servers.database_url, pool_size=pool_size)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def print_lines(lines: list[str]) -> int:
    for line in lines:
        print(line)
    return 0


def refuse(error: ProblemError) -> int:
    """A refused command: one line on stderr naming why, exit status 1; no stack trace."""
    print(f"error: {error.detail}", file=sys.stderr)
    return 1
