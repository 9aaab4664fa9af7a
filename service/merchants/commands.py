"""`carbon-points merchants …`: merchants, terminals, keys and offers."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.command_runtime import Output, add_json_option
from service.config import Settings


def register(subparsers: Any) -> None:
    """Add the `merchants` command to the CLI's sub-parsers."""
    merchants: argparse.ArgumentParser = subparsers.add_parser(
        "merchants", help="merchants, terminals, keys and offers"
    )
    merchant_commands = merchants.add_subparsers(dest="merchants_command", required=True)
    m_create = merchant_commands.add_parser("create", help="create a merchant and its first key")
    m_create.add_argument("code")
    m_create.add_argument("--name", required=True)
    m_create.add_argument("--region")
    m_terminal = merchant_commands.add_parser("add-terminal", help="a till, with its own key")
    m_terminal.add_argument("code")
    m_terminal.add_argument("--terminal", required=True)
    m_terminal.add_argument("--name", required=True)
    m_key = merchant_commands.add_parser("issue-key", help="another key with chosen scopes")
    m_key.add_argument("code")
    m_key.add_argument("--scopes", default="redeem,refund,settlement")
    m_offer = merchant_commands.add_parser("add-offer", help="an offer in the catalogue")
    m_offer.add_argument("code")
    m_offer.add_argument("--title", required=True)
    m_offer.add_argument("--points", type=int, required=True)
    m_offer.add_argument("--face-value-fen", type=int, required=True)
    m_offer.add_argument("--days", type=int, default=30)
    m_offer.add_argument("--stock", type=int)
    m_offer.add_argument("--per-user-limit", type=int)
    m_offer.add_argument("--region")
    for command in (m_create, m_terminal, m_key, m_offer):
        add_json_option(command)
    merchants.set_defaults(handler=cmd_merchants)


def cmd_merchants(args: argparse.Namespace, settings: Settings) -> int:
    from service.command_runtime import emit, refuse, resolve_command_servers, run_in_session
    from service.errors import ProblemError

    servers = resolve_command_servers(settings)

    async def work(session: AsyncSession) -> Output:
        return await administer(session, args, now=datetime.now(UTC))

    try:
        return emit(run_in_session(servers, work), args)
    except ProblemError as error:
        return refuse(error)


async def administer(session: AsyncSession, args: argparse.Namespace, *, now: datetime) -> Output:
    """One `merchants` command in the caller's transaction; what to print."""
    from service.merchants import service as merchants
    from service.merchants.auth import issue_key

    command = args.merchants_command
    if command == "create":
        merchant = await merchants.create_merchant(
            session, code=args.code, name=args.name, region=args.region
        )
        scopes = ["redeem", "refund", "settlement"]
        issued = await issue_key(session, merchant.id, scopes)
        return Output(
            [
                f"merchant {merchant.code} ({merchant.id})",
                f"api key: {issued.token}",
                "(shown once)",
            ],
            {
                "merchant": {
                    "id": str(merchant.id),
                    "code": merchant.code,
                    "name": merchant.name,
                    "region": merchant.region,
                },
                "api_key": issued.token,
                "scopes": scopes,
            },
        )
    merchant = await merchants.merchant_by_code(session, args.code)
    if command == "add-terminal":
        terminal = await merchants.add_terminal(session, merchant.id, args.terminal, args.name)
        issued = await issue_key(session, merchant.id, ["redeem"], terminal.id)
        return Output(
            [
                f"terminal {terminal.code} ({terminal.id})",
                f"api key: {issued.token}",
                "(shown once; scope: redeem)",
            ],
            {
                "terminal": {"id": str(terminal.id), "code": terminal.code},
                "api_key": issued.token,
                "scopes": ["redeem"],
            },
        )
    if command == "issue-key":
        scopes = args.scopes.split(",")
        issued = await issue_key(session, merchant.id, scopes)
        return Output(
            [f"api key: {issued.token}", "(shown once)"],
            {"api_key": issued.token, "scopes": scopes},
        )
    offer = await merchants.create_offer(
        session,
        merchant.id,
        title=args.title,
        points_price=args.points,
        face_value_fen=args.face_value_fen,
        valid_from=now,
        valid_to=now + timedelta(days=args.days),
        stock=args.stock,
        per_user_limit=args.per_user_limit,
        region=args.region,
    )
    return Output(
        [f"offer {offer.id}: {offer.title} for {offer.points_price} points"],
        {
            "offer": {
                "id": str(offer.id),
                "title": offer.title,
                "points_price": offer.points_price,
                "face_value_fen": offer.face_value_fen,
                "valid_from": offer.valid_from.isoformat(),
                "valid_to": offer.valid_to.isoformat(),
                "stock": offer.stock,
                "per_user_limit": offer.per_user_limit,
                "region": offer.region,
            }
        },
    )
