"""App reads cost a fixed, small number of round trips to PostgreSQL, counted at the driver."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from asyncpg.connection import Connection
from asyncpg.prepared_stmt import PreparedStatement

from tests.accounts.helpers import bearer
from tests.crediting.conftest import Live
from tests.participants.test_app_api import _citizen_with_a_trip, http

__all__ = ["http"]


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
    monkeypatch.setattr(
        Connection, "execute", counting("execute", Connection.execute, lambda s, a: a[0])
    )
    execute = "_Connection__execute"
    monkeypatch.setattr(
        Connection, execute, counting(execute, getattr(Connection, execute), lambda s, a: a[0])
    )
    try:
        yield queries
    finally:
        monkeypatch.undo()


async def test_a_balance_read_is_three_round_trips_and_a_history_page_two(
    live: Live, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, _ = await _citizen_with_a_trip(live, http, "card-rt")
    auth = bearer(user.access_token)
    await http.get("/v1/app/balance", headers=auth)  # warm the connection and caches
    with round_trips(monkeypatch) as queries:
        balance = await http.get("/v1/app/balance", headers=auth)
    assert balance.status_code == 200
    assert balance.json()["available"] == 576
    # The token's user, the ledger's three accounts with the expiring lots, pending events.
    assert len(queries) == 3, queries
    assert not any(q.upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")) for q in queries)

    with round_trips(monkeypatch) as queries:
        page = await http.get("/v1/app/history?limit=20", headers=auth)
    assert [item["points"] for item in page.json()["items"]] == [576]
    assert len(queries) == 2, queries  # the token's user, the page
