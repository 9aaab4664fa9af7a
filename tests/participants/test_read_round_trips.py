"""App reads cost a fixed, small number of round trips to PostgreSQL, counted at the driver."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from service.db import behind_pgbouncer
from tests.accounts.helpers import bearer
from tests.crediting.conftest import Live
from tests.participants.test_app_api import _citizen_with_a_trip, http
from tests.round_trips import round_trips

__all__ = ["http"]


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


async def test_nothing_can_be_written_through_the_read_pool(live: Live) -> None:
    if behind_pgbouncer(live.app.state.engine):
        pytest.skip(
            "behind PgBouncer 1.18 the read pool cannot ask for read-only sessions (no such"
            " startup parameter through it): docs/scaling.md"
        )
    async with live.app.state.read_pool.acquire() as connection:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await connection.execute("UPDATE users SET token_generation = token_generation + 1")
