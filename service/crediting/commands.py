"""`carbon-points crediting …`: the crediting path's jobs."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings


def register(subparsers: Any) -> None:
    """Add the `crediting` command to the CLI's sub-parsers."""
    from service.command_runtime import add_json_option, add_progress_option

    crediting: argparse.ArgumentParser = subparsers.add_parser("crediting", help="crediting jobs")
    commands = crediting.add_subparsers(dest="crediting_command", required=True)
    expire = commands.add_parser(
        "expire-pending", help="close pending events whose claim window passed unlinked"
    )
    add_json_option(expire)
    add_progress_option(expire)
    crediting.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from service.command_runtime import Output, emit, progress_bar, resolve_command_servers
    from service.db import create_engine, create_sessionmaker

    servers = resolve_command_servers(settings)

    async def work() -> int:
        engine = create_engine(servers.database_url, pool_size=2)
        try:
            with progress_bar("closing pending events", args) as advance:
                return await expire_all_pending(
                    create_sessionmaker(engine), now=datetime.now(UTC), progress=advance
                )
        finally:
            await engine.dispose()

    expired = asyncio.run(work())
    return emit(Output([f"expired {expired} pending event(s)"], {"expired_events": expired}), args)


async def expire_all_pending(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    progress: Callable[[int, int | None], None] | None = None,
) -> int:
    """`expire_pending` a committed batch at a time until a batch closes nothing: a crash
    loses at most the batch in flight. Returns the events closed."""
    from service.crediting.service import expire_pending
    from service.methodologies.service import RegistryCache

    cache = RegistryCache()
    total = 0
    while True:
        async with sessionmaker() as session, session.begin():
            registry = await cache.get(session)
            expired = await expire_pending(session, registry, now=now)
        total += expired
        if progress is not None:
            progress(total, None)
        if expired == 0:
            return total
