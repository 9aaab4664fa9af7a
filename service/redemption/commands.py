"""`carbon-points redemptions …`: the redemption domain's job."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from service.config import Settings


def register(subparsers: Any) -> None:
    """Add the `redemptions` command to the CLI's sub-parsers."""
    from service.command_runtime import add_json_option, add_progress_option

    redemptions: argparse.ArgumentParser = subparsers.add_parser(
        "redemptions", help="redemption jobs"
    )
    commands = redemptions.add_subparsers(dest="redemptions_command", required=True)
    what = (
        "void holds past their timeout and send redemption.expired to their merchants"
        " (also: ledger void-overdue-holds)"
    )
    expire = commands.add_parser("expire-holds", help=what, description=what)
    add_json_option(expire)
    add_progress_option(expire)
    redemptions.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from service.command_runtime import Output, emit, progress_bar, resolve_command_servers
    from service.db import create_engine, create_sessionmaker
    from service.redemption.jobs import expire_overdue_holds

    servers = resolve_command_servers(settings)

    async def work() -> int:
        engine = create_engine(servers.database_url, pool_size=2)
        try:
            with progress_bar("expiring overdue holds", args) as advance:
                return await expire_overdue_holds(create_sessionmaker(engine), progress=advance)
        finally:
            await engine.dispose()

    expired = asyncio.run(work())
    return emit(Output([f"voided {expired} overdue hold(s)"], {"expired_holds": expired}), args)
