"""Async engine and the session-per-request dependency.

The request's session dependency owns the transaction: it commits when the
endpoint returns and rolls back when it raises. Services take the session as
their first argument and never commit. The commit happens before the response
is sent (`scope="function"`), so a 2xx is only ever sent for committed work.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, cast

import asyncpg
import orjson
from fastapi import Depends, Request
from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from service.config import get_settings
from service.embedded import to_sqlalchemy_url


def create_engine(
    database_url: str, *, pool_size: int = 10, pgbouncer: bool | None = None
) -> AsyncEngine:
    """One engine per process, created at start-up.

    `pgbouncer` (default: the `CARBON_POINTS_DB_PGBOUNCER` setting): the URL is a PgBouncer
    in transaction pooling mode, where consecutive transactions of one client connection may
    run on different server connections, so nothing may outlive a transaction on the server
    (`pgbouncer_connect_args`; docs/scaling.md).

    No `pool_pre_ping`: it cost three round trips on every checkout (SQLAlchemy's asyncpg
    ping is BEGIN, `;`, ROLLBACK), a third of a balance read's. A checkout instead refuses,
    for free, a connection whose socket is already closed (a restarted or killed server: its
    connections' sockets see EOF), and SQLAlchemy recycles the whole pool when a statement
    meets a dead connection, so a restart costs at most the requests in flight at that moment.
    """
    if pgbouncer is None:
        pgbouncer = get_settings().db_pgbouncer
    connect_args: dict[str, Any] = {"server_settings": {"application_name": "carbon-points"}}
    if pgbouncer:
        connect_args.update(pgbouncer_connect_args())
    engine = create_async_engine(
        to_sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        # json/jsonb columns decoded by orjson, not the standard library (history pages
        # decode a document per row).
        json_deserializer=orjson.loads,
        connect_args=connect_args,
        execution_options={_PGBOUNCER_OPTION: pgbouncer},
    )
    event.listen(engine.sync_engine, "checkout", _refuse_closed)
    return engine


_PGBOUNCER_OPTION = "carbon_points_pgbouncer"


def pgbouncer_connect_args() -> dict[str, Any]:
    """The connect arguments for a PgBouncer in transaction pooling mode (1.18 and older:
    no prepared statements across transactions).

    - asyncpg's statement cache off (`statement_cache_size=0`): asyncpg then prepares every
      statement unnamed and marks it unprepared, so its Parse travels with its Bind and
      Execute before one Sync (asyncpg's own PgBouncer handling), and no statement is ever
      looked up on a server connection that may by then serve another client;
    - SQLAlchemy's prepared-statement cache off (`prepared_statement_cache_size=0`) for the
      same reason; its statements stay unnamed too (the dialect's default name function):
      a uniquely named statement (SQLAlchemy's other suggestion) would be prepared and
      executed in two Syncs, which in an autocommit read can land on two servers.
    """
    return {"statement_cache_size": 0, "prepared_statement_cache_size": 0}


def behind_pgbouncer(engine: AsyncEngine) -> bool:
    """Whether `engine` was made for a PgBouncer in transaction pooling mode."""
    return bool(engine.get_execution_options().get(_PGBOUNCER_OPTION, False))


def _refuse_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    driver = getattr(dbapi_connection, "driver_connection", None)
    if driver is not None and driver.is_closed():
        raise exc.DisconnectionError("the connection was closed by the server")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def create_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for reads that one statement answers: autocommit, so no BEGIN and COMMIT
    round trips around them. Never write through one: each statement commits alone."""
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"),
        expire_on_commit=False,
        autoflush=False,
    )


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


DbSession = Annotated[AsyncSession, Depends(_session, scope="function")]
"""The request's session; committed when the endpoint returns, rolled back if it raises."""


async def driver(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under `session`, for a hot path's statements sent straight to
    the driver (asyncpg's `$1` placeholders): about 100 microseconds less Python a statement
    than through `AsyncSession.execute` (`benchmarks/micro_driver.py`, docs/performance.md).

    The statements run in the session's transaction. SQLAlchemy sends BEGIN lazily, with
    its own first statement, so a statement sent here before any would run in autocommit:
    when the transaction has not begun, one statement through the session begins it (the
    request paths always have sent one by then). json and jsonb columns decode as through
    the session (orjson); json parameters are JSON text.
    """
    connection = await session.connection()
    raw = (await connection.get_raw_connection()).driver_connection
    if raw is None:
        raise RuntimeError("driver(): the session has no connection")
    if not raw.is_in_transaction():
        await connection.exec_driver_sql("SELECT 1")
        if not raw.is_in_transaction():
            raise RuntimeError("driver(): the session's transaction did not begin")
    return cast(asyncpg.Connection, raw)


async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.read_sessionmaker
    async with sessionmaker() as session:
        yield session


ReadSession = Annotated[AsyncSession, Depends(_read_session, scope="function")]
"""An autocommit session for read-only endpoints whose every answer is one statement (or a
few that need not agree on one snapshot): no BEGIN/COMMIT round trips. Never write with it."""

get_session = _session


async def _streaming_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        yield session  # closed (rolled back) once the response's last byte is sent


get_streaming_session = _streaming_session
StreamingSession = Annotated[AsyncSession, Depends(_streaming_session, scope="request")]
"""A read-only session, one snapshot, that stays open while a streamed response is written
(`scope="request"`: closed after the response, not before it as `DbSession` is)."""


def json_rows(**columns: Sequence[Any]) -> str:
    """Rows for `json_to_recordset(CAST(:rows AS json)) AS r(name type, ...)`: a set-based
    statement's rows as ONE text parameter.

    Why not one array parameter per column (`unnest(CAST(:ids AS bigint[]), ...)`)? asyncpg
    checks every array element against three abstract base classes to find nested arrays;
    at 500 rows and 15 columns that costs more Python time than the whole statement's SQL.
    orjson writes the same rows in microseconds. Values: int, str, None, bool, UUID, aware
    datetime, and nested lists or dicts (for json/jsonb columns); bytes must be hex text
    (`decode(r.col, 'hex')` in SQL).
    """
    names = list(columns)
    rows = zip(*columns.values(), strict=True)
    return json_text([dict(zip(names, row, strict=True)) for row in rows])


def json_text(value: Any) -> str:
    """JSON for a json parameter; also takes asyncpg's own UUID type (ids read back)."""
    return orjson.dumps(value, default=_uuid_text).decode()


def _uuid_text(value: Any) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# --- the hot read path -----------------------------------------------------------------------


class Reader(Protocol):
    """Runs one read statement (asyncpg's `$1` placeholders) and returns its rows, each a
    sequence of column values (index them, or unpack them; not by name)."""

    async def rows(self, sql: str, *args: Any) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class PoolReader:
    """Straight to asyncpg: no session, no statement compiling, no transaction. The read
    path's per-statement cost in Python falls from a few hundred microseconds through
    `AsyncSession.execute` to a few tens (docs/performance.md, issue 12)."""

    connection: Any  # asyncpg.Connection

    async def rows(self, sql: str, *args: Any) -> Sequence[Any]:
        result: Sequence[Any] = await self.connection.fetch(sql, *args)
        return result


@dataclass(frozen=True, slots=True)
class SessionReader:
    """The same statements inside a session's transaction (other callers, tests)."""

    session: AsyncSession

    async def rows(self, sql: str, *args: Any) -> Sequence[Any]:
        connection = await self.session.connection()
        return (await connection.exec_driver_sql(sql, args)).all()


def reader(source: AsyncSession | Reader) -> Reader:
    return SessionReader(source) if isinstance(source, AsyncSession) else source


# The read pool's bound on waiting for a connection and on one statement, seconds.
READ_TIMEOUT_SECONDS = 10.0


async def _as_left(connection: Any) -> None:
    """Release without asyncpg's reset round trip: the read pool's statements change no
    session state (and its connections are read-only)."""


async def _json_codecs(connection: Any) -> None:
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name, encoder=json_text, decoder=orjson.loads, schema="pg_catalog"
        )


async def create_read_pool(engine: AsyncEngine, *, size: int) -> Any:
    """The app's hot reads' own small asyncpg pool (balance, history and the token check
    before them), connecting exactly where `engine` does (the same connect arguments, so a
    URL's socket or host options mean the same to both). Its sessions are read-only
    (`default_transaction_read_only`): nothing can write through it. Connections open on
    demand.

    Behind PgBouncer (`behind_pgbouncer(engine)`) its statements are unnamed and re-parsed
    (`statement_cache_size=0`), and its sessions are not made read-only: PgBouncer 1.18
    refuses a startup parameter other than a few (application_name, client_encoding, ...),
    and a session-level SET would stay on whichever server connection ran it. The pool's
    statements are SELECTs in code either way (service/participants, service/accounts)."""
    args, options = engine.dialect.create_connect_args(engine.url)
    server_settings = {"application_name": "carbon-points-reads"}
    extra: dict[str, Any] = {}
    if behind_pgbouncer(engine):
        extra["statement_cache_size"] = 0
    else:
        server_settings["default_transaction_read_only"] = "on"
    options = {**options, **extra}
    return await asyncpg.create_pool(
        *args,
        **options,
        min_size=0,
        max_size=size,
        # A hung server (or a host gone without closing its sockets) must give a 503, not
        # a request that waits for ever: asyncpg's timeouts are TimeoutErrors, which
        # `service.errors.database_unavailable` answers with 503 and Retry-After.
        command_timeout=READ_TIMEOUT_SECONDS,
        reset=_as_left,
        init=_json_codecs,
        server_settings=server_settings,
    )


async def _app_reader(request: Request) -> AsyncIterator[Reader]:
    async with request.app.state.read_pool.acquire(timeout=READ_TIMEOUT_SECONDS) as connection:
        yield PoolReader(connection)


AppReader = Annotated[Reader, Depends(_app_reader, scope="function")]
"""A `PoolReader` on the read pool, for the app's hottest read-only endpoints."""


@asynccontextmanager
async def try_advisory_lock(engine: AsyncEngine, key: int) -> AsyncIterator[bool]:
    """Hold PostgreSQL's advisory lock `key` for the block, if no one else holds it: yields
    whether it was had (a periodic job's "am I the one running this now").

    A transaction-level lock (`pg_try_advisory_xact_lock`) in a transaction of its own,
    left open (idle, no snapshot held under READ COMMITTED) on a connection of its own for
    the block, and ended with it: so it works unchanged behind PgBouncer in transaction
    pooling mode, which keeps a server connection to one client only for a transaction (a
    session-level lock would stay on a server connection that PgBouncer hands to others,
    and its unlock could reach another). Released at the end of the block, or by the server
    when the connection goes (a process that dies: PgBouncer closes a server connection left
    in a transaction)."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            got = bool(await connection.scalar(_TRY_LOCK, {"key": key}))
            yield got
        finally:
            await transaction.rollback()  # the lock goes with the transaction


_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")
