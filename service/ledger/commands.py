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
    commands.add_parser("expire", help="expire due lots (resumable, idempotent)")
    commands.add_parser("void-overdue-holds", help="void holds past their timeout")
    ledger.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from service.command_runtime import resolve_command_servers
    from service.db import create_engine, create_sessionmaker
    from service.ledger.jobs import run_expiry, run_hold_timeouts
    from service.ledger.verify import VerifyReport, verify_ledger

    servers = resolve_command_servers(settings)
    checkpoint = None
    if getattr(args, "checkpoint", None):
        stored = json.loads(Path(args.checkpoint).read_text())
        checkpoint = {int(k): (int(v[0]), str(v[1])) for k, v in stored.items()}

    async def work() -> VerifyReport | str:
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

    outcome = asyncio.run(work())
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
