"""`carbon-points ledger …`: verify the ledger on live data and run its jobs."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from service.config import Settings


def register(subparsers: Any) -> None:
    """Add the `ledger` command to the CLI's sub-parsers."""
    from service.command_runtime import add_json_option, add_progress_option

    ledger: argparse.ArgumentParser = subparsers.add_parser(
        "ledger", help="verify the ledger and run its jobs"
    )
    commands = ledger.add_subparsers(dest="ledger_command", required=True)
    verify = commands.add_parser(
        "verify", help="check invariants 1-3 and 7 on live data; exit 1 naming any bad row"
    )
    verify.add_argument("--max-violations", type=int, default=100)
    verify.add_argument("--checkpoint", help="chain heads saved earlier; they must still hold")
    verify.add_argument(
        "--write-checkpoint", help="save the chain heads (keep the file outside the database)"
    )
    expire = commands.add_parser("expire", help="expire due lots (resumable, idempotent)")
    # Holds past their timeout: `carbon-points redemptions expire-holds` (the redemption
    # domain's job, which also tells the merchants); `ledger void-overdue-holds` still runs it.
    for job in (verify, expire):
        add_json_option(job)
        add_progress_option(job)
    ledger.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from service.command_runtime import Output, emit, progress_bar, resolve_command_servers
    from service.db import create_engine, create_sessionmaker
    from service.ledger.jobs import run_expiry
    from service.ledger.verify import VerifyReport, verify_ledger

    servers = resolve_command_servers(settings)
    checkpoint = None
    if getattr(args, "checkpoint", None):
        stored = json.loads(Path(args.checkpoint).read_text())
        checkpoint = {int(k): (int(v[0]), str(v[1])) for k, v in stored.items()}

    async def work() -> VerifyReport | int:
        engine = create_engine(servers.database_url, pool_size=2)
        try:
            if args.ledger_command == "verify":
                with progress_bar("verifying the ledger", args) as advance:
                    return await verify_ledger(
                        engine,
                        max_violations=args.max_violations,
                        checkpoint=checkpoint,
                        progress=advance,
                    )
            with progress_bar("expiring lots", args) as advance:
                return await run_expiry(create_sessionmaker(engine), progress=advance)
        finally:
            await engine.dispose()

    outcome = asyncio.run(work())
    if isinstance(outcome, int):
        return emit(Output([f"expired {outcome} lot(s)"], {"expired_lots": outcome}), args)
    lines = [f"VIOLATION {violation}" for violation in outcome.violations]
    if outcome.truncated:
        lines.append(f"... more violations not shown (limit {args.max_violations})")
    lines.append(
        f"checked {outcome.transactions} transactions, {outcome.postings} postings, "
        f"{outcome.accounts} accounts, {outcome.lots} lots: "
        + ("OK" if outcome.ok else f"{len(outcome.violations)} violation(s)")
    )
    if args.write_checkpoint and outcome.ok:
        Path(args.write_checkpoint).write_text(
            json.dumps({str(k): list(v) for k, v in outcome.heads.items()})
        )
        lines.append(
            f"chain heads of {len(outcome.heads)} accounts written to {args.write_checkpoint}"
        )
    data = {
        "ok": outcome.ok,
        "transactions": outcome.transactions,
        "postings": outcome.postings,
        "accounts": outcome.accounts,
        "lots": outcome.lots,
        "violations": [
            {"invariant": v.invariant, "where": v.where, "detail": v.detail}
            for v in outcome.violations
        ],
        "truncated": outcome.truncated,
    }
    emit(Output(lines, data), args)
    return 0 if outcome.ok else 1
