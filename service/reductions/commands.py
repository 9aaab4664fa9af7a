"""`carbon-points reductions …`: run a pool, and verify every rule of the certified reductions.

`reductions run POOL` is the job a scheduler calls (the admin API's run does the same); it is
recorded in the audit trail as the `cli` operator. `reductions verify` exits 1 naming each
breach.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from service.command_runtime import Output, add_json_option
from service.config import Settings

CLI_ACTOR_LOGIN = "cli"


def register(subparsers: Any) -> None:
    """Add the `reductions` command to the CLI's sub-parsers."""
    reductions: argparse.ArgumentParser = subparsers.add_parser(
        "reductions", help="certified reductions: run pools, verify"
    )
    commands = reductions.add_subparsers(dest="reductions_command", required=True)
    run = commands.add_parser(
        "run", help="pool a pool's eligible credits into a new batch (exit 1 if refused)"
    )
    run.add_argument("pool", help="the pool's code")
    verify = commands.add_parser(
        "verify",
        help="check provenance, the pools' balances, serials and retirements; exit 1 naming"
        " any breach",
    )
    for command in (run, verify):
        add_json_option(command)
    reductions.set_defaults(handler=cmd_reductions)


def cmd_reductions(args: argparse.Namespace, settings: Settings) -> int:
    from service import audit
    from service.command_runtime import emit, refuse, resolve_command_servers, run_in_session
    from service.errors import ProblemError
    from service.reductions import documents, service
    from service.reductions.verify import ReductionsReport, verify_reductions

    servers = resolve_command_servers(settings)

    if args.reductions_command == "verify":

        async def check(session: AsyncSession) -> ReductionsReport:
            return await verify_reductions(session)

        report = run_in_session(servers, check)
        lines = [f"BREACH {breach}" for breach in report.breaches]
        lines.append(
            f"checked {report.pools} pools, {report.batches} batches, {report.blocks} blocks,"
            f" {report.retirements} retirements: "
            + ("OK" if report.ok else f"{len(report.breaches)} breach(es)")
        )
        emit(
            Output(
                lines,
                {
                    "ok": report.ok,
                    "pools": report.pools,
                    "batches": report.batches,
                    "blocks": report.blocks,
                    "retirements": report.retirements,
                    "breaches": report.breaches,
                },
            ),
            args,
        )
        return 0 if report.ok else 1

    async def run(session: AsyncSession) -> Output:
        actor = audit.Actor(None, CLI_ACTOR_LOGIN, "program-admin", "cli")
        batch = await service.run_pool(session, actor, args.pool, now=datetime.now(UTC))
        zone = ZoneInfo(settings.program_timezone)
        doc = documents.issuance_json(await service.issuance(session, batch.id), zone)
        return Output(
            [
                f"batch {doc['batch_id']}: {doc['kilograms']} kg issued, {doc['serials']}",
                f"pooled {doc['pooled_grams']} g from {doc['provenance']['credits']} credits;"
                f" carried {doc['carried_out_grams']} g to the next batch",
            ],
            doc,
        )

    try:
        return emit(run_in_session(servers, run), args)
    except ProblemError as error:
        return refuse(error)
