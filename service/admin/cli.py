"""`carbon-points admin ...`, `audit ...` and the methodology lifecycle commands.

The lifecycle commands call the same service functions as the admin API; `--as LOGIN` names
the administrator on whose behalf the operator acts (four eyes hold there too), and each act
is recorded in the audit trail with request id `cli`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.command_runtime import Output, add_json_option, emit
from service.config import Settings

LIFECYCLE_COMMANDS = (
    "sync",
    "draft",
    "diff",
    "backtest",
    "approve",
    "schedule",
    "unschedule",
    "retire",
    "versions",
)


def register(commands: Any) -> None:
    admin = commands.add_parser("admin", help="administrators")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    boot = admin_commands.add_parser(
        "bootstrap", help="create the first administrator; prints the TOTP URI once"
    )
    boot.add_argument("login")
    boot.add_argument("--display-name", required=True)
    boot.add_argument(
        "--roles",
        default="program-admin",
        help="comma-separated (default: program-admin)",
    )
    boot.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (else CARBON_POINTS_ADMIN_PASSWORD, "
        "else a prompt)",
    )
    add_json_option(boot)
    admin.set_defaults(handler=cmd_admin)

    audit = commands.add_parser("audit", help="the audit trail of administrative acts")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    add_json_option(
        audit_commands.add_parser("verify", help="check the hash chain; exit 1 naming bad rows")
    )
    audit.set_defaults(handler=cmd_audit)


def lifecycle_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carbon-points methodology",
        description="The methodology lifecycle (validate and explain: see `methodology --help`).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sync = sub.add_parser("sync", help="file every shipped methodology not yet filed (idempotent)")
    versions = sub.add_parser("versions", help="list filed versions and their periods")
    draft = sub.add_parser("draft", help="upload a draft")
    draft.add_argument("file")
    draft.add_argument("--as", dest="actor", required=True, metavar="LOGIN")
    diff = sub.add_parser("diff", help="a draft against the version in force")
    diff.add_argument("draft_id", type=int)
    backtest = sub.add_parser(
        "backtest", help="evaluate a draft over the stored events of a window (writes nothing)"
    )
    backtest.add_argument("draft_id", type=int)
    backtest.add_argument("--start", required=True, help="ISO 8601 with offset (inclusive)")
    backtest.add_argument("--end", required=True, help="ISO 8601 with offset (exclusive)")
    backtest.add_argument("--top", type=int, default=10, help="participants most affected")
    backtest.add_argument("--json", action="store_true", help="print the report as JSON")
    backtest.add_argument(
        "--no-progress", action="store_true", help="no progress bar (e.g. in a log)"
    )
    approve = sub.add_parser("approve", help="approve a draft (not its author)")
    approve.add_argument("draft_id", type=int)
    approve.add_argument("--as", dest="actor", required=True, metavar="LOGIN")
    schedule = sub.add_parser("schedule", help="file an approved draft from an exact instant")
    schedule.add_argument("draft_id", type=int)
    schedule.add_argument("--at", required=True, help="ISO 8601 with offset")
    schedule.add_argument("--as", dest="actor", required=True, metavar="LOGIN")
    unschedule = sub.add_parser(
        "unschedule", help="undo a schedule before its instant (the previous period returns)"
    )
    unschedule.add_argument("draft_id", type=int)
    unschedule.add_argument("--as", dest="actor", required=True, metavar="LOGIN")
    retire = sub.add_parser("retire", help="end a filed version's period")
    retire.add_argument("methodology_id")
    retire.add_argument("version", type=int)
    retire.add_argument("--at", required=True, help="ISO 8601 with offset")
    retire.add_argument("--as", dest="actor", required=True, metavar="LOGIN")
    for command in (sync, versions, draft, diff, approve, schedule, unschedule, retire):
        add_json_option(command)
    return parser


def _run(settings: Settings, work: Any) -> Any:
    from service.command_runtime import resolve_command_servers, run_in_session

    return run_in_session(resolve_command_servers(settings), work)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    from_env = os.environ.get("CARBON_POINTS_ADMIN_PASSWORD")
    if from_env:
        return from_env
    return getpass.getpass("password: ")


def cmd_admin(args: argparse.Namespace, settings: Settings) -> int:
    from service.accounts.passwords import MAX_LENGTH, MIN_LENGTH
    from service.admin.service import bootstrap
    from service.dev_secrets import load_secrets
    from service.errors import ProblemError

    password = _password(args)
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        print(f"the password needs {MIN_LENGTH} to {MAX_LENGTH} characters", file=sys.stderr)
        return 2
    secrets = load_secrets(settings)

    async def work(session: AsyncSession) -> Any:
        return await bootstrap(
            session,
            secrets.partner_secret_key,
            login=args.login,
            display_name=args.display_name,
            password=password,
            roles=[r.strip() for r in args.roles.split(",") if r.strip()],
        )

    try:
        enrolled = _run(settings, work)
    except ProblemError as error:
        print(f"refused: {error.detail}", file=sys.stderr)
        return 1
    return emit(
        Output(
            [
                f"administrator {enrolled.admin.login} ({enrolled.admin.id})",
                f"roles: {', '.join(enrolled.admin.roles)}",
                f"TOTP provisioning URI (shown once): {enrolled.provisioning_uri}",
            ],
            {
                "id": str(enrolled.admin.id),
                "login": enrolled.admin.login,
                "roles": list(enrolled.admin.roles),
                "totp_provisioning_uri": enrolled.provisioning_uri,
            },
        ),
        args,
    )


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from service.audit import verify_audit
    from service.command_runtime import resolve_command_servers
    from service.db import create_engine

    servers = resolve_command_servers(settings)

    async def run() -> Any:
        engine = create_engine(servers.database_url, pool_size=1)
        try:
            return await verify_audit(engine)
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    lines = [f"VIOLATION {problem}" for problem in report.problems]
    lines.append(
        f"checked {report.entries} audit entries: "
        + ("OK" if report.ok else f"{len(report.problems)} problem(s)")
        + f"; head {report.head}"
    )
    data = {
        "ok": report.ok,
        "entries": report.entries,
        "head": str(report.head),
        "problems": [str(problem) for problem in report.problems],
    }
    emit(Output(lines, data), args)
    return 0 if report.ok else 1


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        example = "2027-01-01T00:00:00+08:00"
        raise SystemExit(f"{text!r} is not an ISO 8601 instant, e.g. {example}") from None
    if moment.tzinfo is None:
        raise SystemExit("give the instant with its UTC offset, e.g. 2027-01-01T00:00:00+08:00")
    return moment


def _print_refusal(error: Any) -> None:
    """A refusal as the operator reads it: the reason, then each problem as
    `file:line:column: path: message` (as `methodology validate` prints them)."""
    from points_rules import Problem

    print(f"refused: {error.detail}", file=sys.stderr)
    for p in error.extensions.get("problems", []):
        print(Problem(p["file"], p["path"], p["message"], p["line"], p["column"]), file=sys.stderr)


def _read_document(file: str) -> str:
    """The draft's text; an unreadable or non-UTF-8 file is a problem naming where."""
    from points_rules import MethodologyError, Problem, decode_document

    try:
        raw = Path(file).read_bytes()
    except OSError as error:
        raise MethodologyError([Problem(file, "", f"cannot read: {error.strerror}")]) from None
    return decode_document(raw, file)


def cmd_lifecycle(argv: list[str], settings: Settings) -> int:
    from points_rules import MethodologyError
    from service import audit
    from service.admin import repository as admins
    from service.errors import ProblemError
    from service.methodologies import lifecycle
    from service.methodologies.service import sync_library

    args = lifecycle_parser().parse_args(argv)
    document = ""
    if args.command == "draft":
        try:
            document = _read_document(args.file)
            # Checked before any server is reached, as the upload will check it.
            lifecycle.parse_draft(document, args.file)
        except MethodologyError as error:
            for problem in error.problems:
                print(problem, file=sys.stderr)
            return 1
        except ProblemError as error:
            _print_refusal(error)
            return 1
    lead = timedelta(seconds=settings.methodology_min_lead_seconds)

    async def actor(session: AsyncSession) -> Any:
        from service.errors import NotFoundError

        admin = await admins.by_login(session, args.actor)
        if admin is None or admin.status != "active":
            raise NotFoundError(f"no active administrator {args.actor!r}")
        return admin

    async def acting(session: AsyncSession, *roles: str) -> audit.Actor:
        from service.admin.errors import RoleRequiredError

        admin: Any = await actor(session)
        role = next((r for r in roles if r in admin.roles), None)
        if role is None:
            raise RoleRequiredError(f"{admin.login} has none of the roles {', '.join(roles)}")
        return audit.Actor(admin.id, admin.login, role, "cli")

    async def work(session: AsyncSession) -> list[str]:
        command = args.command
        if command == "sync":
            return [f"{await sync_library(session)} shipped methodologies filed or checked"]
        if command == "versions":
            filed = await lifecycle.all_filed_versions(session)
            structured.extend(
                {
                    "methodology_id": v.methodology_id,
                    "version": v.version,
                    "action_type": v.action_type,
                    "region": v.region,
                    "effective_from": v.effective_from.isoformat(),
                    "effective_to": v.effective_to.isoformat() if v.effective_to else None,
                }
                for v in filed
            )
            return [
                f"{v.methodology_id}@v{v.version}\t{v.action_type}\t{v.region or '*'}\t"
                f"{v.effective_from.isoformat()}.."
                + (v.effective_to.isoformat() if v.effective_to else "open")
                for v in filed
            ]
        if command == "draft":
            who = await acting(session, "methodology-author")
            draft = await lifecycle.create_draft(session, who, document, file=args.file)
            return [f"draft {draft.id}: {draft.methodology_id} v{draft.version}"]
        if command == "diff":
            result = await lifecycle.diff_draft(session, args.draft_id)
            against = (
                f"{result.in_force.methodology_id}@v{result.in_force.version}"
                if result.in_force
                else "nothing in force"
            )
            return [f"draft {args.draft_id} against {against}:"] + [
                f"  {c}" for c in result.changes
            ]
        if command == "backtest":
            return await _backtest_lines(session, args)
        if command == "approve":
            who = await acting(session, "methodology-approver")
            draft = await lifecycle.approve(session, who, args.draft_id)
            return [f"draft {draft.id} approved by {who.login}"]
        if command == "schedule":
            who = await acting(session, "methodology-approver")
            done = await lifecycle.schedule(
                session, who, args.draft_id, _instant(args.at), min_lead=lead
            )
            closes = (
                f"; {done.previous.methodology_id}@v{done.previous.version} ends then"
                if done.previous
                else ""
            )
            return [f"draft {done.draft.id} in force from {args.at}{closes}"]
        if command == "unschedule":
            who = await acting(session, "methodology-approver")
            undone = await lifecycle.unschedule(session, who, args.draft_id, min_lead=lead)
            reopens = (
                f"; {undone.reopened.methodology_id}@v{undone.reopened.version} open again"
                if undone.reopened
                else ""
            )
            return [f"draft {undone.draft.id} approved, no longer scheduled{reopens}"]
        who = await acting(session, "methodology-approver")
        row = await lifecycle.retire(
            session, who, args.methodology_id, args.version, _instant(args.at), min_lead=lead
        )
        return [f"{row.methodology_id}@v{row.version} ends at {row.effective_to}"]

    structured: list[dict[str, Any]] = []
    try:
        lines = _run(settings, work)
    except ProblemError as error:
        _print_refusal(error)
        return 1
    if args.command == "backtest":  # prints its own report (`--json` there is the report's)
        for line in lines:
            print(line)
        return 0
    # `versions` lists its rows; the acts report what they did, in the words printed.
    return emit(Output(lines, structured if args.command == "versions" else {"done": lines}), args)


async def _backtest_lines(session: AsyncSession, args: argparse.Namespace) -> list[str]:
    """The back-test as the API runs it (the same service function), with a progress bar
    on standard error, then the report."""
    import json

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from service.methodologies import lifecycle
    from service.methodologies.backtest import backtest, backtest_size

    start, end = _instant(args.start), _instant(args.end)
    if not start < end:
        raise SystemExit("--end must be after --start")
    draft = lifecycle.compile_version(await lifecycle.get_draft(session, args.draft_id))
    total = await backtest_size(session, draft, start, end)
    with Progress(
        TextColumn("back-test"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=args.no_progress,
    ) as bar:
        task = bar.add_task("back-test", total=total)
        report = await backtest(
            session, draft, start, end, progress=lambda done: bar.advance(task, done)
        )
    body = report.as_json(args.top)
    if args.json:
        return [json.dumps({"draft_id": args.draft_id, **body}, ensure_ascii=False, indent=2)]
    lines = [
        f"draft {args.draft_id} ({draft.id} v{draft.version}) over {start.isoformat()} .. "
        f"{end.isoformat()}: {body['events']} events, {body['mismatches']} mismatches",
        "action_type\tregion\tstatus\tevents\tgrams now\tgrams draft\tpoints now\t"
        "points draft\tcapped now\tcapped draft",
    ]
    lines += [
        f"{g['action_type']}\t{g['region'] or '*'}\t{g['status']}\t{g['events']}\t"
        f"{g['grams_in_force']}\t{g['grams_draft']}\t{g['points_in_force']}\t"
        f"{g['points_draft']}\t{g['capped_in_force']}\t{g['capped_draft']}"
        for g in body["groups"]
    ]
    lines += [f"cap {code} binds {count} event(s)" for code, count in body["binding_caps"].items()]
    lines += [
        f"participant {a['participant_id']}: {a['points_difference']:+d} points"
        for a in body["most_affected"]
    ]
    return lines
