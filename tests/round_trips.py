"""Counting the statements a request sends to PostgreSQL, at the driver."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asyncpg.connection import Connection
from asyncpg.prepared_stmt import PreparedStatement


@contextmanager
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every query sent through asyncpg while the block runs: prepared statements executed
    (SQLAlchemy's path), simple queries (BEGIN, COMMIT, ROLLBACK, pings) and fetches. Not
    counted: the one-off Parse of a statement a connection has not prepared yet (asyncpg's
    statement cache keeps them, so a warm connection sends none)."""
    queries: list[str] = []

    def counting(name: str, original: Any, text_of: Any) -> Any:
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            queries.append(" ".join(str(text_of(self, args)).split())[:300])
            return await original(self, *args, **kwargs)

        return wrapper

    bind_execute = "_PreparedStatement__bind_execute"
    monkeypatch.setattr(
        PreparedStatement,
        bind_execute,
        counting(bind_execute, getattr(PreparedStatement, bind_execute), lambda s, a: s._query),
    )
    # `execute(query)` without arguments is a simple query, one round trip of its own; with
    # arguments it goes through `__execute`, counted below (counting both counted it twice).
    plain_execute = Connection.execute

    async def execute(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if not args:
            queries.append(" ".join(query.split())[:300])
        return await plain_execute(self, query, *args, **kwargs)

    monkeypatch.setattr(Connection, "execute", execute)
    execute = "_Connection__execute"
    monkeypatch.setattr(
        Connection, execute, counting(execute, getattr(Connection, execute), lambda s, a: a[0])
    )
    try:
        yield queries
    finally:
        monkeypatch.undo()
