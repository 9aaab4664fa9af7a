"""Alembic, driven from Python so the CLI, the tests and `/readyz` share one configuration."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

_CANDIDATES = (
    Path(__file__).resolve().parents[1] / "migrations",
    Path.cwd() / "migrations",
)


def migrations_dir() -> Path:
    for candidate in _CANDIDATES:
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("the migrations/ folder was not found beside the service package")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # Stored unescaped on the attributes dict: ConfigParser would choke on '%' in passwords.
    config.attributes["database_url"] = database_url
    return config


def head_revisions() -> frozenset[str]:
    return code_migrations().heads


@dataclass(frozen=True, slots=True)
class CodeMigrations:
    """What this code knows of the schema: its heads, and every revision it ships."""

    heads: frozenset[str]
    known: frozenset[str]


def code_migrations() -> CodeMigrations:
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
    return CodeMigrations(
        heads=frozenset(script.get_heads()),
        known=frozenset(revision.revision for revision in script.walk_revisions()),
    )


MigrationState = Literal["current", "ahead", "behind"]


def migration_state(database: frozenset[str], code: CodeMigrations) -> MigrationState:
    """Where the database stands against the code: `current` at the code's heads; `ahead`
    when it carries a revision this code does not ship (a newer release's expand step, run
    before its processes start: revisions are only ever appended, so an unknown one is a
    later one); `behind` when it is unmigrated or at a revision older than a head.

    Expand/contract (docs/architecture.md) is what makes `ahead` safe to serve.
    """
    if database == code.heads:
        return "current"
    if database and all(rev in code.heads or rev not in code.known for rev in database):
        return "ahead"
    return "behind"


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


async def current_revisions(engine: AsyncEngine) -> frozenset[str]:
    from sqlalchemy import text

    async with engine.connect() as conn:
        exists = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
        if not exists:
            return frozenset()
        rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
        return frozenset(row[0] for row in rows)


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    """Alembic's env.py runs its own event loop; keep it off the caller's loop."""
    await asyncio.to_thread(upgrade, database_url, revision)


async def downgrade_async(database_url: str, revision: str) -> None:
    await asyncio.to_thread(downgrade, database_url, revision)
