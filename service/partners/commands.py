"""`carbon-points partners …`: partners and their signing keys, for administrators."""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.command_runtime import Output, add_json_option
from service.config import Settings
from service.models import Partner
from service.partners.credentials import IssuedCredential
from service.partners.service import KINDS


def register(subparsers: Any) -> None:
    """Add the `partners` command to the CLI's sub-parsers."""
    partners: argparse.ArgumentParser = subparsers.add_parser(
        "partners", help="partners and their signing keys"
    )
    commands = partners.add_subparsers(dest="partners_command", required=True)
    create = commands.add_parser("create", help="create a partner and its first key")
    create.add_argument("code")
    create.add_argument("--name", required=True)
    create.add_argument("--kind", required=True, choices=list(KINDS))
    create.add_argument("--action-types", required=True, help="comma-separated, e.g. transit.metro")
    create.add_argument("--region")
    create.add_argument("--rate-limit", type=int, default=2000, help="requests per second")
    listing = commands.add_parser("list", help="list partners")
    issue = commands.add_parser("issue-key", help="issue another key")
    issue.add_argument("code")
    rotate = commands.add_parser("rotate-key", help="issue a successor; old key overlaps")
    rotate.add_argument("key_id")
    rotate.add_argument("--overlap-hours", type=int, default=24)
    revoke = commands.add_parser("revoke-key", help="stop a key now")
    revoke.add_argument("key_id")
    link = commands.add_parser(
        "link", help="link a partner identity to a participant (the app does this later)"
    )
    link.add_argument("code")
    link.add_argument("--subject", required=True, help="the card or account number")
    link.add_argument("--participant", required=True, type=uuid.UUID)
    for command in (create, listing, issue, rotate, revoke, link):
        add_json_option(command)
    partners.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from service.command_runtime import (
        emit,
        refuse,
        resolve_command_servers,
        run_in_session,
    )
    from service.dev_secrets import load_secrets
    from service.errors import ProblemError

    servers = resolve_command_servers(settings)
    secrets = load_secrets(settings)

    async def work(session: AsyncSession) -> Output:
        return await administer(
            session,
            args,
            partner_key=secrets.partner_secret_key,
            pepper=secrets.identifier_pepper,
            validity=timedelta(days=settings.points_validity_days),
            now=datetime.now(UTC),
        )

    try:
        return emit(run_in_session(servers, work), args)
    except ProblemError as error:
        return refuse(error)


async def administer(
    session: AsyncSession,
    args: argparse.Namespace,
    *,
    partner_key: str,
    pepper: str,
    validity: timedelta,
    now: datetime,
) -> Output:
    """One `partners` command in the caller's transaction; what to print."""
    from service.partners import credentials
    from service.partners.service import create_partner, list_partners, partner_by_code

    command = args.partners_command
    if command == "create":
        partner = await create_partner(
            session,
            code=args.code,
            name=args.name,
            kind=args.kind,
            action_types=args.action_types.split(","),
            region=args.region,
            rate_limit_per_second=args.rate_limit,
        )
        issued = await credentials.issue_credential(session, partner_key, partner.id)
        shown = _show(issued)
        return Output(
            [f"partner {partner.code} ({partner.id})", *shown.lines],
            {"partner": _partner(partner), "key": shown.data},
        )
    if command == "list":
        listed = await list_partners(session)
        return Output(
            [f"{p.code}\t{p.kind}\t{p.status}\t{','.join(p.allowed_action_types)}" for p in listed],
            [_partner(p) for p in listed],
        )
    if command == "issue-key":
        partner = await partner_by_code(session, args.code)
        return _show(await credentials.issue_credential(session, partner_key, partner.id))
    if command == "rotate-key":
        issued = await credentials.rotate_credential(
            session,
            partner_key,
            args.key_id,
            overlap=timedelta(hours=args.overlap_hours),
            now=now,
        )
        shown = _show(issued)
        return Output(
            [*shown.lines, f"{args.key_id} keeps working for {args.overlap_hours} h, then stops"],
            {**shown.data, "replaces": args.key_id, "overlap_hours": args.overlap_hours},
        )
    if command == "revoke-key":
        await credentials.revoke_credential(session, args.key_id, now=now)
        return Output([f"{args.key_id} revoked"], {"key_id": args.key_id, "revoked": True})
    return await _link(session, args, pepper=pepper, validity=validity, now=now)


async def _link(
    session: AsyncSession,
    args: argparse.Namespace,
    *,
    pepper: str,
    validity: timedelta,
    now: datetime,
) -> Output:
    from service.crediting.service import CreditingSettings, link_identity
    from service.methodologies.service import RegistryCache
    from service.partners.service import partner_by_code

    partner = await partner_by_code(session, args.code)
    registry = await RegistryCache().get(session)
    released = await link_identity(
        session,
        registry,
        CreditingSettings(pepper=pepper, validity=validity),
        participant_id=args.participant,
        partner_id=partner.id,
        subject_ref=args.subject,
        now=now,
    )
    return Output(
        [f"linked; {len(released)} pending event(s) released"]
        + [f"  {o.external_id}: {o.status} {o.points} points" for o in released],
        {
            "linked": True,
            "released": [
                {"external_id": o.external_id, "status": o.status, "points": o.points}
                for o in released
            ],
        },
    )


def _partner(partner: Partner) -> dict[str, object]:
    return {
        "id": str(partner.id),
        "code": partner.code,
        "name": partner.name,
        "kind": partner.kind,
        "status": partner.status,
        "action_types": list(partner.allowed_action_types),
        "region": partner.region,
        "rate_limit_per_second": partner.rate_limit_per_second,
    }


def _show(issued: IssuedCredential) -> Output:
    return Output(
        [
            f"key id: {issued.key_id}",
            f"secret: {issued.secret}",
            "(shown once: store it in the partner's secret store)",
        ],
        {"key_id": issued.key_id, "secret": issued.secret},
    )
