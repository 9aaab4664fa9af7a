"""`carbon-points`: serve, migrate, seed, and the administrators' tools.

Every command that needs the servers resolves them the same way: `DATABASE_URL`
and `REDIS_URL` when set, otherwise the embedded servers under the data dir.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings, get_settings
from service.embedded import Servers, resolve_servers
from service.observability import configure_logging, get_logger

T = TypeVar("T")


def _servers(settings: Settings) -> Servers:
    servers = resolve_servers(settings)
    # Child processes (uvicorn workers, alembic) read the resolved URLs from here.
    os.environ["DATABASE_URL"] = servers.database_url
    os.environ["REDIS_URL"] = servers.redis_url
    # Settings were read before the URLs were known; an in-process uvicorn worker must
    # read them again, with the URLs.
    get_settings.cache_clear()
    get_logger("carbon_points.cli").info("servers", **servers.describe())
    return servers


def _with_session(
    servers: Servers, work: Callable[[AsyncSession], Awaitable[T]], *, pool_size: int = 2
) -> T:
    from service.db import create_engine, create_sessionmaker

    async def run() -> T:
        engine = create_engine(servers.database_url, pool_size=pool_size)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    servers = _servers(settings)
    workers = args.workers or settings.workers
    host = args.host or settings.http_host
    port = args.port or settings.http_port
    if workers > 1:
        prom_dir = settings.data_dir.resolve() / "prometheus"
        shutil.rmtree(prom_dir, ignore_errors=True)
        prom_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom_dir)
    # uvicorn re-raises the signal that stopped it; with Python's default SIGTERM action the
    # process would die without running atexit, leaving the embedded servers running.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    print(f"carbon-points on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    print(f"servers: {servers.describe()}", flush=True)
    uvicorn.run(
        "service.app:create_app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )
    return 0


def _exit_cleanly(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from service import migrations

    servers = _servers(settings)
    if args.db_command == "upgrade":
        migrations.upgrade(servers.database_url, args.revision)
        if args.revision == "head" and not args.no_methodologies:
            from service.methodologies.service import sync_library

            # A production install must credit: the shipped library is filed with the schema
            # (idempotent; a filed version is never changed).
            checked = _with_session(servers, sync_library)
            print(f"methodology library: {checked} shipped versions filed or already filed")
    elif args.db_command == "downgrade":
        migrations.downgrade(servers.database_url, args.revision)
    else:
        from service.db import create_engine

        async def current() -> frozenset[str]:
            engine = create_engine(servers.database_url, pool_size=1)
            try:
                return await migrations.current_revisions(engine)
            finally:
                await engine.dispose()

        revisions = asyncio.run(current())
        heads = migrations.head_revisions()
        state = "current" if revisions == heads else "behind"
        print(f"database at {sorted(revisions) or ['base']}; head {sorted(heads)} ({state})")
        return 0 if revisions == heads else 1
    return 0


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    from service.dev_secrets import load_secrets
    from service.seed import seed_demo_data

    if settings.environment == "production":
        print(
            "refused: `seed` writes a demo partner, merchant and credits; it never runs with "
            "CARBON_POINTS_ENVIRONMENT=production (file the methodologies with "
            "`carbon-points db upgrade` or `carbon-points methodology sync`)",
            file=sys.stderr,
        )
        return 1

    servers = _servers(settings)
    partner_key = load_secrets(settings).partner_secret_key

    async def seed(session: AsyncSession) -> dict[str, str]:
        return await seed_demo_data(session, partner_key)

    offered = _with_session(servers, seed)
    for name, value in offered.items():
        print(f"{name}: {value}")
    return 0


def cmd_methodology(args: argparse.Namespace, settings: Settings) -> int:
    from points_rules.cli import main as methodology_main

    return methodology_main(list(args.rest) or ["--help"])


def cmd_ledger(args: argparse.Namespace, settings: Settings) -> int:
    from service.db import create_engine, create_sessionmaker
    from service.ledger.jobs import run_expiry, run_hold_timeouts
    from service.ledger.verify import VerifyReport, verify_ledger

    servers = _servers(settings)
    checkpoint = None
    if getattr(args, "checkpoint", None):
        stored = json.loads(Path(args.checkpoint).read_text())
        checkpoint = {int(k): (int(v[0]), str(v[1])) for k, v in stored.items()}

    async def run() -> VerifyReport | str:
        engine = create_engine(servers.database_url, pool_size=2)
        try:
            if args.ledger_command == "verify":
                return await verify_ledger(
                    engine, max_violations=args.max_violations, checkpoint=checkpoint
                )
            sessionmaker = create_sessionmaker(engine)
            if args.ledger_command == "expire":
                return f"expired {await run_expiry(sessionmaker)} lot(s)"
            return f"voided {await run_hold_timeouts(sessionmaker)} overdue hold(s)"
        finally:
            await engine.dispose()

    outcome = asyncio.run(run())
    if isinstance(outcome, str):
        print(outcome)
        return 0
    for violation in outcome.violations:
        print(f"VIOLATION {violation}")
    if outcome.truncated:
        print(f"... more violations not shown (limit {args.max_violations})")
    print(
        f"checked {outcome.transactions} transactions, {outcome.postings} postings, "
        f"{outcome.accounts} accounts, {outcome.lots} lots: "
        + ("OK" if outcome.ok else f"{len(outcome.violations)} violation(s)")
    )
    if args.write_checkpoint and outcome.ok:
        Path(args.write_checkpoint).write_text(
            json.dumps({str(k): list(v) for k, v in outcome.heads.items()})
        )
        print(f"chain heads of {len(outcome.heads)} accounts written to {args.write_checkpoint}")
    return 0 if outcome.ok else 1


def cmd_partners(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from service.crediting.service import CreditingSettings, link_identity
    from service.dev_secrets import load_secrets
    from service.methodologies.service import RegistryCache
    from service.models import Partner
    from service.partners import credentials
    from service.partners.service import create_partner, partner_by_code

    servers = _servers(settings)
    secrets = load_secrets(settings)
    now = datetime.now(UTC)

    async def work(session: AsyncSession) -> list[str]:
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
            issued = await credentials.issue_credential(
                session, secrets.partner_secret_key, partner.id
            )
            return [f"partner {partner.code} ({partner.id})", *_show(issued)]
        if command == "list":
            rows = (await session.execute(select(Partner).order_by(Partner.code))).scalars()
            return [
                f"{p.code}\t{p.kind}\t{p.status}\t{','.join(p.allowed_action_types)}" for p in rows
            ]
        if command == "issue-key":
            partner = await partner_by_code(session, args.code)
            issued = await credentials.issue_credential(
                session, secrets.partner_secret_key, partner.id
            )
            return _show(issued)
        if command == "rotate-key":
            issued = await credentials.rotate_credential(
                session,
                secrets.partner_secret_key,
                args.key_id,
                overlap=timedelta(hours=args.overlap_hours),
                now=now,
            )
            return [
                *_show(issued),
                f"{args.key_id} keeps working for {args.overlap_hours} h, then stops",
            ]
        if command == "revoke-key":
            await credentials.revoke_credential(session, args.key_id, now=now)
            return [f"{args.key_id} revoked"]
        partner = await partner_by_code(session, args.code)
        registry = await RegistryCache().get(session)
        released = await link_identity(
            session,
            registry,
            CreditingSettings(
                pepper=secrets.identifier_pepper,
                validity=timedelta(days=settings.points_validity_days),
            ),
            participant_id=args.participant,
            partner_id=partner.id,
            subject_ref=args.subject,
            now=now,
        )
        return [f"linked; {len(released)} pending event(s) released"] + [
            f"  {o.external_id}: {o.status} {o.points} points" for o in released
        ]

    for line in _with_session(servers, work):
        print(line)
    return 0


def cmd_crediting(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from service.crediting.service import expire_pending
    from service.methodologies.service import RegistryCache

    servers = _servers(settings)

    async def work(session: AsyncSession) -> int:
        registry = await RegistryCache().get(session)
        return await expire_pending(session, registry, now=datetime.now(UTC))

    print(f"expired {_with_session(servers, work)} pending event(s)")
    return 0


def cmd_merchants(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime, timedelta

    from service.merchants import service as merchants
    from service.merchants.auth import issue_key
    from service.models import Merchant

    servers = _servers(settings)

    async def merchant_by_code(session: AsyncSession, code: str) -> Merchant:
        from sqlalchemy import select

        from service.errors import NotFoundError

        found = await session.scalar(select(Merchant).where(Merchant.code == code))
        if found is None:
            raise NotFoundError(f"no merchant {code!r}")
        return found

    async def work(session: AsyncSession) -> list[str]:
        command = args.merchants_command
        if command == "create":
            merchant = await merchants.create_merchant(
                session, code=args.code, name=args.name, region=args.region
            )
            issued = await issue_key(session, merchant.id, ["redeem", "refund", "settlement"])
            return [
                f"merchant {merchant.code} ({merchant.id})",
                f"api key: {issued.token}",
                "(shown once)",
            ]
        merchant = await merchant_by_code(session, args.code)
        if command == "add-terminal":
            terminal = await merchants.add_terminal(session, merchant.id, args.terminal, args.name)
            issued = await issue_key(session, merchant.id, ["redeem"], terminal.id)
            return [
                f"terminal {terminal.code} ({terminal.id})",
                f"api key: {issued.token}",
                "(shown once; scope: redeem)",
            ]
        if command == "issue-key":
            issued = await issue_key(session, merchant.id, args.scopes.split(","))
            return [f"api key: {issued.token}", "(shown once)"]
        now = datetime.now(UTC)
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
        return [f"offer {offer.id}: {offer.title} for {offer.points_price} points"]

    for line in _with_session(servers, work):
        print(line)
    return 0


def _show(issued: object) -> list[str]:
    key_id = getattr(issued, "key_id", "")
    secret = getattr(issued, "secret", "")
    return [
        f"key id: {key_id}",
        f"secret: {secret}",
        "(shown once: store it in the partner's secret store)",
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carbon-points", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(handler=cmd_serve)

    db = commands.add_parser("db", help="database migrations")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    up = db_commands.add_parser("upgrade", help="migrate up (default: to head)")
    up.add_argument("revision", nargs="?", default="head")
    up.add_argument(
        "--no-methodologies",
        action="store_true",
        help="do not file the shipped methodology library (done by default at head)",
    )
    down = db_commands.add_parser("downgrade", help="migrate down to a revision ('base': all)")
    down.add_argument("revision")
    db_commands.add_parser("current", help="print the revision; exit 1 when behind head")
    db.set_defaults(handler=cmd_db)

    seed = commands.add_parser("seed", help="insert demo data (idempotent)")
    seed.set_defaults(handler=cmd_seed)

    ledger = commands.add_parser("ledger", help="verify the ledger and run its jobs")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    verify = ledger_commands.add_parser(
        "verify", help="check invariants 1-3 and 7 on live data; exit 1 naming any bad row"
    )
    verify.add_argument("--max-violations", type=int, default=100)
    verify.add_argument("--checkpoint", help="chain heads saved earlier; they must still hold")
    verify.add_argument(
        "--write-checkpoint", help="save the chain heads (keep the file outside the database)"
    )
    ledger_commands.add_parser("expire", help="expire due lots (resumable, idempotent)")
    ledger_commands.add_parser("void-overdue-holds", help="void holds past their timeout")
    ledger.set_defaults(handler=cmd_ledger)

    partners = commands.add_parser("partners", help="partners and their signing keys")
    partner_commands = partners.add_subparsers(dest="partners_command", required=True)
    create = partner_commands.add_parser("create", help="create a partner and its first key")
    create.add_argument("code")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--kind",
        required=True,
        choices=["transit", "bikeshare", "maas", "utility", "retail", "waste"],
    )
    create.add_argument("--action-types", required=True, help="comma-separated, e.g. transit.metro")
    create.add_argument("--region")
    create.add_argument("--rate-limit", type=int, default=2000, help="requests per second")
    partner_commands.add_parser("list", help="list partners")
    issue = partner_commands.add_parser("issue-key", help="issue another key")
    issue.add_argument("code")
    rotate = partner_commands.add_parser("rotate-key", help="issue a successor; old key overlaps")
    rotate.add_argument("key_id")
    rotate.add_argument("--overlap-hours", type=int, default=24)
    revoke = partner_commands.add_parser("revoke-key", help="stop a key now")
    revoke.add_argument("key_id")
    link = partner_commands.add_parser(
        "link", help="link a partner identity to a participant (the app does this later)"
    )
    link.add_argument("code")
    link.add_argument("--subject", required=True, help="the card or account number")
    link.add_argument("--participant", required=True, type=uuid.UUID)
    partners.set_defaults(handler=cmd_partners)

    merchants = commands.add_parser("merchants", help="merchants, terminals, keys and offers")
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
    merchants.set_defaults(handler=cmd_merchants)

    crediting = commands.add_parser("crediting", help="crediting jobs")
    crediting_commands = crediting.add_subparsers(dest="crediting_command", required=True)
    crediting_commands.add_parser(
        "expire-pending", help="close pending events whose claim window passed unlinked"
    )
    crediting.set_defaults(handler=cmd_crediting)

    methodology = commands.add_parser(
        "methodology",
        help="validate and explain methodology documents (see: methodology --help)",
        add_help=False,
    )
    methodology.add_argument("rest", nargs=argparse.REMAINDER)
    methodology.set_defaults(handler=cmd_methodology)
    from service.admin.cli import register as register_admin
    from service.webhooks.cli import register as register_webhooks

    register_admin(commands)

    register_webhooks(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["methodology"] and arguments[1:2]:
        from service.admin.cli import LIFECYCLE_COMMANDS, cmd_lifecycle

        if arguments[1] in LIFECYCLE_COMMANDS:
            settings = get_settings()
            configure_logging(settings.log_level, settings.log_format)
            return cmd_lifecycle(arguments[1:], settings)
    if arguments[:1] == ["methodology"]:
        # The pure engine owns this command's arguments, --help included; no servers needed.
        from points_rules.cli import main as methodology_main

        return methodology_main(arguments[1:] or ["--help"])
    args = build_parser().parse_args(arguments)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    return handler(args, settings)


if __name__ == "__main__":
    raise SystemExit(main())
