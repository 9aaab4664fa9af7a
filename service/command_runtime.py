"""What every `carbon-points` command module shares: the servers, a session, clean errors,
results on stdout (`--json` for machines), and a progress bar on stderr for long jobs.

The command modules (`service/<domain>/commands.py`, `service/webhooks/cli.py`) import this,
never `service.cli`, which only assembles their parsers and dispatches: so no import circle.

Streams: stdout carries a command's results and nothing else; logs (`service.observability`,
configured for stderr by the CLI), progress bars and `error:` lines go to stderr. So
`carbon-points partners list --json | jq` works whatever the log level.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings, get_settings
from service.embedded import Servers, resolve_servers
from service.observability import get_logger

if TYPE_CHECKING:
    from service.errors import ProblemError

T = TypeVar("T")


def resolve_command_servers(settings: Settings) -> Servers:
    """`DATABASE_URL` and `REDIS_URL` when set, otherwise the embedded servers under the
    data dir; published in the environment for child processes."""
    servers = resolve_servers(settings)
    # Child processes (uvicorn workers, alembic) read the resolved URLs from here.
    os.environ["DATABASE_URL"] = servers.database_url
    os.environ["REDIS_URL"] = servers.redis_url
    # Settings were read before the URLs were known; an in-process uvicorn worker must
    # read them again, with the URLs.
    get_settings.cache_clear()
    get_logger("carbon_points.cli").info("servers", **servers.describe())
    return servers


def run_in_session(
    servers: Servers, work: Callable[[AsyncSession], Awaitable[T]], *, pool_size: int = 2
) -> T:
    """Run `work` in one transaction on a short-lived engine: committed when it returns,
    rolled back when it raises (the command owns the transaction, as a request does)."""
    from service.db import create_engine, create_sessionmaker

    async def run() -> T:
        engine = create_engine(servers.database_url, pool_size=pool_size)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def print_lines(lines: list[str]) -> int:
    for line in lines:
        print(line)
    return 0


def refuse(error: ProblemError) -> int:
    """A refused command: one line on stderr naming why, exit status 1; no stack trace."""
    print(f"error: {error.detail}", file=sys.stderr)
    return 1


@dataclass(frozen=True, slots=True)
class Output:
    """A command's result, twice: `lines` for people, `data` for machines (`--json`)."""

    lines: Sequence[str]
    data: Any


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        dest="as_json",
        help="print the result as one JSON document on stdout (logs stay on stderr)",
    )


def emit(output: Output, args: argparse.Namespace) -> int:
    """Print the result on stdout: its JSON with `--json`, else its lines; exit status 0."""
    if getattr(args, "as_json", False):
        print(json.dumps(output.data, default=str, ensure_ascii=False, indent=2))
    else:
        for line in output.lines:
            print(line)
    return 0


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it is off anyway when stderr is not a terminal)",
    )


Advance = Callable[[int, int | None], None]
"""A job's progress report: (done so far, total when known)."""


@contextlib.contextmanager
def progress_bar(description: str, args: argparse.Namespace) -> Iterator[Advance]:
    """A progress bar on stderr for a long job, unless `--no-progress` or stderr is not a
    terminal (a cron job's log, a pipe): then reports are dropped."""
    if getattr(args, "no_progress", False) or not sys.stderr.isatty():
        yield lambda _done, _total: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def advance(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield advance
