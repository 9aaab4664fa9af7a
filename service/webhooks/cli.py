"""`carbon-points webhooks …`: endpoints, the delivery worker, dead letters and replay."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.command_runtime import Output, add_json_option
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
    for command in (replay, dead, create, listing, disable, rotate):
        add_json_option(command)
    webhooks.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from service.command_runtime import emit, refuse
    from service.command_runtime import resolve_command_servers as _servers
    from service.dev_secrets import load_secrets
    from service.errors import ProblemError

    servers = _servers(settings)
    partner_key = load_secrets(settings).partner_secret_key
    if args.webhooks_command == "deliver":
        asyncio.run(_deliver(servers.database_url, partner_key, args.batch_size, args.poll))
        return 0
    try:
        output = asyncio.run(_administer(servers.database_url, partner_key, args))
    except ProblemError as error:
        return refuse(error)
    return emit(output, args)


async def _deliver(
    database_url: str, partner_key: str, batch_size: int, poll: float | None
) -> None:
    import httpx

    from service.db import create_engine, create_sessionmaker
    from service.observability import get_logger
    from service.webhooks.delivery import DEFAULT_TIMEOUT, USER_AGENT, deliver_due

    log = get_logger("carbon_points.webhooks")
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
                    log.info("webhooks delivered", attempted=attempted)
                    continue  # more may have become due while sending
                if poll is None:
                    return
                await asyncio.sleep(poll)
    finally:
        await engine.dispose()


async def _administer(database_url: str, partner_key: str, args: argparse.Namespace) -> Output:
    from service.db import create_engine, create_sessionmaker

    engine = create_engine(database_url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            return await administer(session, partner_key, args, now=datetime.now(UTC))
    finally:
        await engine.dispose()


async def administer(
    session: AsyncSession, partner_key: str, args: argparse.Namespace, *, now: datetime
) -> Output:
    """One `webhooks` command (not `deliver`) in the caller's transaction; what to print."""
    from service.webhooks import service

    command = args.webhooks_command
    if command == "replay":
        message = await service.replay(session, args.message_id)
        return Output(
            [f"{message.id} pending again (endpoint {message.endpoint_id})"],
            {"message_id": message.id, "endpoint_id": str(message.endpoint_id)},
        )
    if command == "list-dead":
        dead = await service.list_dead(session, limit=args.limit)
        return Output(
            [
                f"{m.id}\t{m.event_type}\t{m.endpoint_id}\t{m.attempts}\t{m.last_error or ''}"
                for m in dead
            ],
            [
                {
                    "id": m.id,
                    "event_type": m.event_type,
                    "endpoint_id": str(m.endpoint_id),
                    "attempts": m.attempts,
                    "last_error": m.last_error,
                }
                for m in dead
            ],
        )
    if command == "create":
        await _require_owner(session, args.owner_type, args.owner_id)
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
        endpoints = await service.list_endpoints(
            session,
            owner_type=args.owner_type,
            owner_id=args.owner_id,
            include_disabled=args.all,
        )
        return Output(
            [
                f"{e.id}\t{e.url}\t{','.join(e.event_types)}"
                + (f"\tdisabled {e.disabled_at.isoformat()}" if e.disabled_at else "")
                for e in endpoints
            ],
            [
                {
                    "id": str(e.id),
                    "url": e.url,
                    "event_types": list(e.event_types),
                    "disabled_at": e.disabled_at.isoformat() if e.disabled_at else None,
                }
                for e in endpoints
            ],
        )
    if command == "disable":
        await service.disable_endpoint(session, args.endpoint_id, now=now)
        return Output(
            [f"{args.endpoint_id} disabled"],
            {"endpoint_id": str(args.endpoint_id), "disabled": True},
        )
    issued = await service.rotate_secret(
        session,
        partner_key,
        args.endpoint_id,
        now=now,
        overlap=timedelta(hours=args.overlap_hours),
    )
    shown = _show(issued.endpoint_id, issued.secret)
    return Output(
        [*shown.lines, f"the old secret also signs for {args.overlap_hours} h"],
        {**shown.data, "old_secret_overlap_hours": args.overlap_hours},
    )


async def _require_owner(session: AsyncSession, owner_type: str, owner_id: uuid.UUID) -> None:
    """An endpoint for nobody would never be sent anything: the owner must exist, as its
    own domain says (merchants, partners)."""
    if owner_type == "merchant":
        from service.merchants.service import get_merchant

        await get_merchant(session, owner_id)
    else:
        from service.partners.service import partner_by_id

        await partner_by_id(session, owner_id)


def _show(endpoint_id: uuid.UUID, secret: str) -> Output:
    return Output(
        [
            f"endpoint: {endpoint_id}",
            f"secret: {secret}",
            "(shown once: give it to the receiver to verify signatures)",
        ],
        {"endpoint_id": str(endpoint_id), "secret": secret},
    )
