"""`carbon-points crediting …`: the crediting path's jobs."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings


def register(subparsers: Any) -> None:
    """Add the `crediting` command to the CLI's sub-parsers."""
    crediting: argparse.ArgumentParser = subparsers.add_parser("crediting", help="crediting jobs")
    commands = crediting.add_subparsers(dest="crediting_command", required=True)
    commands.add_parser(
        "expire-pending", help="close pending events whose claim window passed unlinked"
    )
    crediting.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from service.command_runtime import resolve_command_servers, run_in_session
    from service.crediting.service import expire_pending
    from service.methodologies.service import RegistryCache

    servers = resolve_command_servers(settings)

    async def work(session: AsyncSession) -> int:
        registry = await RegistryCache().get(session)
        return await expire_pending(session, registry, now=datetime.now(UTC))

    print(f"expired {run_in_session(servers, work)} pending event(s)")
    return 0
