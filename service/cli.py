"""`carbon-points`: serve, migrate, seed, and the administrators' tools.

Every command that needs the servers resolves them the same way: `DATABASE_URL`
and `REDIS_URL` when set, otherwise the embedded servers under the data dir.

This module only assembles the parser from each domain's command module and dispatches;
the commands live with their domains (`service/<domain>/commands.py` or `cli.py`) and share
`service.command_runtime`, never this module.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from service.config import Settings, get_settings
from service.observability import configure_logging
from service.platform_commands import cmd_db, cmd_seed, cmd_serve

_DESCRIPTION = """`carbon-points`: serve, migrate, seed, and the administrators' tools.

Every command that needs the servers resolves them the same way: `DATABASE_URL`
and `REDIS_URL` when set, otherwise the embedded servers under the data dir.
"""

__all__ = ["build_parser", "cmd_db", "cmd_seed", "cmd_serve", "main"]


def cmd_methodology(args: argparse.Namespace, settings: Settings) -> int:
    from points_rules.cli import main as methodology_main

    return methodology_main(list(args.rest) or ["--help"])


def build_parser() -> argparse.ArgumentParser:
    from service.admin.cli import register as register_admin
    from service.crediting.commands import register as register_crediting
    from service.ledger.commands import register as register_ledger
    from service.merchants.commands import register as register_merchants
    from service.partners.commands import register as register_partners
    from service.platform_commands import register as register_platform
    from service.redemption.commands import register as register_redemption
    from service.reductions.commands import register as register_reductions
    from service.webhooks.cli import register as register_webhooks

    parser = argparse.ArgumentParser(prog="carbon-points", description=_DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    register_platform(commands)
    register_ledger(commands)
    register_partners(commands)
    register_merchants(commands)
    register_crediting(commands)
    register_redemption(commands)
    register_reductions(commands)

    methodology = commands.add_parser(
        "methodology",
        help="validate and explain methodology documents (see: methodology --help)",
        add_help=False,
    )
    methodology.add_argument("rest", nargs=argparse.REMAINDER)
    methodology.set_defaults(handler=cmd_methodology)
    register_admin(commands)
    register_webhooks(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["methodology"] and arguments[1:2]:
        from service.admin.cli import LIFECYCLE_COMMANDS, cmd_lifecycle

        if arguments[1] in LIFECYCLE_COMMANDS:
            settings = get_settings()
            configure_logging(settings.log_level, settings.log_format, stream="stderr")
            return _run(lambda: cmd_lifecycle(arguments[1:], settings))
    if arguments[:1] == ["methodology"]:
        # The pure engine owns this command's arguments, --help included; no servers needed.
        from points_rules.cli import main as methodology_main

        return methodology_main(arguments[1:] or ["--help"])
    if arguments[:2] == ["ledger", "void-overdue-holds"]:
        # Moved to the redemption domain, which also tells the merchants (redemption.expired);
        # the old spelling keeps working for existing schedules.
        arguments = ["redemptions", "expire-holds", *arguments[2:]]
    args = build_parser().parse_args(arguments)
    settings = get_settings()
    # Logs on stderr: stdout carries only the command's results.
    configure_logging(settings.log_level, settings.log_format, stream="stderr")
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    return _run(lambda: handler(args, settings))


def _run(command: Callable[[], int]) -> int:
    """Run a command; whatever it raises ends as one `error:` line on stderr and exit 1."""
    from service.errors import ProblemError
    from service.observability import get_logger

    try:
        return command()
    except ProblemError as error:
        # A refusal the command did not word itself: still one line, never a stack trace.
        print(f"error: {error.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # an operator gets a line; the trace is in the debug log
        get_logger("carbon_points.cli").debug("command failed", exc_info=True)
        print(f"error: {type(error).__name__}: {error}".splitlines()[0], file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
