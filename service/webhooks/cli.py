"""`carbon-points webhooks …`: endpoints, the delivery worker, dead letters and replay."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from service.config import Settings


def register(subparsers: Any) -> None:
    """Add the `webhooks` command to the CLI's sub-parsers."""
    webhooks: argparse.ArgumentParser = subparsers.add_parser(
        "webhooks", help="outbound webhooks: endpoints, delivery, dead letters, replay"
    )
    commands = webhooks.add_subparsers(dest="webhooks_command", required=True)

    deliver = commands.add_parser("deliver", help="send every due message, then exit")
    deliver.add_argument("--batch-size", type=int, default=100)
    deliver.add_argument(
        "--poll", type=float, metavar="SECONDS", help="keep running, looking again this often"
    )
    replay = commands.add_parser(
        "replay", help="send a dead or delivered message again (same webhook-id, fresh tries)"
    )
    replay.add_argument("message_id")
    dead = commands.add_parser("list-dead", help="messages that ran out of tries")
    dead.add_argument("--limit", type=int, default=100)

    create = commands.add_parser("create", help="add an endpoint; prints its secret once")
    create.add_argument("--owner-type", required=True, choices=["merchant", "partner"])
    create.add_argument("--owner-id", required=True, type=uuid.UUID)
    create.add_argument("--url", required=True)
    create.add_argument("--events", required=True, help="comma-separated, e.g. credit.created")
    listing = commands.add_parser("list", help="an owner's endpoints")
    listing.add_argument("--owner-type", required=True, choices=["merchant", "partner"])
    listing.add_argument("--owner-id", required=True, type=uuid.UUID)
    listing.add_argument("--all", action="store_true", help="include disabled endpoints")
    disable = commands.add_parser("disable", help="stop sending to an endpoint")
    disable.add_argument("endpoint_id", type=uuid.UUID)
    rotate = commands.add_parser(
        "rotate-secret", help="new secret; the old one also signs for the overlap"
    )
    rotate.add_argument("endpoint_id", type=uuid.UUID)
    rotate.add_argument("--overlap-hours", type=int, default=24)
    webhooks.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from service.command_runtime import resolve_command_servers as _servers
    from service.dev_secrets import load_secrets
    from service.errors import ProblemError

    servers = _servers(settings)
    partner_key = load_secrets(settings).partner_secret_key
    if args.webhooks_command == "deliver":
        asyncio.run(_deliver(servers.database_url, partner_key, args.batch_size, args.poll))
        return 0
    try:
        lines = asyncio.run(_administer(servers.database_url, partner_key, args))
    except ProblemError as error:
        print(f"error: {error.detail}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


async def _deliver(
    database_url: str, partner_key: str, batch_size: int, poll: float | None
) -> None:
    import httpx

    from service.db import create_engine, create_sessionmaker
    from service.webhooks.delivery import DEFAULT_TIMEOUT, USER_AGENT, deliver_due

    engine = create_engine(database_url, pool_size=2)
    try:
        sessionmaker = create_sessionmaker(engine)
        async with httpx.AsyncClient(
            timeout=DEFAULT_TIMEOUT, follow_redirects=False, headers={"user-agent": USER_AGENT}
        ) as http:
            while True:
                attempted = await deliver_due(
                    sessionmaker,
                    http,
                    now=datetime.now(UTC),
                    batch_size=batch_size,
                    partner_key=partner_key,
                )
                if attempted:
                    print(f"attempted {attempted} message(s)", flush=True)
                    continue  # more may have become due while sending
                if poll is None:
                    return
                await asyncio.sleep(poll)
    finally:
        await engine.dispose()


async def _administer(database_url: str, partner_key: str, args: argparse.Namespace) -> list[str]:
    from service.db import create_engine, create_sessionmaker
    from service.webhooks import service

    now = datetime.now(UTC)
    engine = create_engine(database_url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            command = args.webhooks_command
            if command == "replay":
                message = await service.replay(session, args.message_id)
                return [f"{message.id} pending again (endpoint {message.endpoint_id})"]
            if command == "list-dead":
                return [
                    f"{m.id}\t{m.event_type}\t{m.endpoint_id}\t{m.attempts}\t{m.last_error or ''}"
                    for m in await service.list_dead(session, limit=args.limit)
                ]
            if command == "create":
                issued = await service.create_endpoint(
                    session,
                    partner_key,
                    owner_type=args.owner_type,
                    owner_id=args.owner_id,
                    url=args.url,
                    event_types=[t.strip() for t in args.events.split(",") if t.strip()],
                )
                return _show(issued.endpoint_id, issued.secret)
            if command == "list":
                return [
                    f"{e.id}\t{e.url}\t{','.join(e.event_types)}"
                    + (f"\tdisabled {e.disabled_at.isoformat()}" if e.disabled_at else "")
                    for e in await service.list_endpoints(
                        session,
                        owner_type=args.owner_type,
                        owner_id=args.owner_id,
                        include_disabled=args.all,
                    )
                ]
            if command == "disable":
                await service.disable_endpoint(session, args.endpoint_id, now=now)
                return [f"{args.endpoint_id} disabled"]
            issued = await service.rotate_secret(
                session,
                partner_key,
                args.endpoint_id,
                now=now,
                overlap=timedelta(hours=args.overlap_hours),
            )
            return [
                *_show(issued.endpoint_id, issued.secret),
                f"the old secret also signs for {args.overlap_hours} h",
            ]
    finally:
        await engine.dispose()


def _show(endpoint_id: uuid.UUID, secret: str) -> list[str]:
    return [
        f"endpoint: {endpoint_id}",
        f"secret: {secret}",
        "(shown once: give it to the receiver to verify signatures)",
    ]
