"""`carbon-points serve | db | seed`: the commands about the service as a whole."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.command_runtime import (
    Output,
    add_json_option,
    emit,
    resolve_command_servers,
    run_in_session,
)
from service.config import Settings


def register(subparsers: Any) -> None:
    """Add `serve`, `db` and `seed` to the CLI's sub-parsers."""
    serve = subparsers.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(handler=cmd_serve)

    db = subparsers.add_parser("db", help="database migrations")
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
    db_commands.add_parser(
        "current", help="print the revision; exit 1 when behind head (ahead is fine)"
    )
    db.set_defaults(handler=cmd_db)

    worker = subparsers.add_parser(
        "worker", help="run the periodic jobs (webhooks, hold timeouts, pending events, lots)"
    )
    worker.add_argument(
        "--only",
        nargs="+",
        choices=("webhooks", "holds", "pending", "lots"),
        default=(),
        help="run only these jobs",
    )
    worker.add_argument("--once", action="store_true", help="run each job once, then exit")
    worker.add_argument(
        "--grace", type=float, default=30.0, help="seconds a run may take to finish on SIGTERM"
    )
    worker.set_defaults(handler=cmd_worker)

    seed = subparsers.add_parser("seed", help="insert demo data (idempotent)")
    add_json_option(seed)
    seed.set_defaults(handler=cmd_seed)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    servers = resolve_command_servers(settings)
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


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from service.dev_secrets import load_secrets
    from service.embedded import start_embedded_postgres
    from service.worker import run_worker

    # The jobs need PostgreSQL only: an embedded one is joined (or started) without Redis.
    database_url = settings.database_url or start_embedded_postgres(
        settings.data_dir.resolve() / "postgres", "carbon_points"
    )
    partner_key = load_secrets(settings).partner_secret_key
    done = asyncio.run(
        run_worker(
            settings,
            database_url,
            partner_key,
            only=tuple(args.only),
            once=args.once,
            grace=args.grace,
        )
    )
    for job, items in done.items():
        print(f"{job}: {'skipped (another worker holds it)' if items is None else items}")
    return 0


def _exit_cleanly(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from service import migrations

    servers = resolve_command_servers(settings)
    if args.db_command == "upgrade":
        migrations.upgrade(servers.database_url, args.revision)
        if args.revision == "head" and not args.no_methodologies:
            from service.methodologies.service import sync_library

            # A production install must credit: the shipped library is filed with the schema
            # (idempotent; a filed version is never changed).
            checked = run_in_session(servers, sync_library)
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
        shipped = migrations.code_migrations()
        state = migrations.migration_state(revisions, shipped)
        print(
            f"database at {sorted(revisions) or ['base']}; head {sorted(shipped.heads)} ({state})"
        )
        # Ahead is a newer release's expand step: this code still runs on it.
        return 1 if state == "behind" else 0
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

    servers = resolve_command_servers(settings)
    partner_key = load_secrets(settings).partner_secret_key

    async def seed(session: AsyncSession) -> dict[str, str]:
        return await seed_demo_data(session, partner_key)

    offered = run_in_session(servers, seed)
    return emit(Output([f"{name}: {value}" for name, value in offered.items()], offered), args)
