"""Smoke test of the app-reads benchmark's floor (benchmarks/floor_reads.py), over ASGI.

On the test database, a participant credited through the ledger: the floor verifies the
service's access tokens (a bad signature, an unknown key, an expired token, a garbled token
and no header get 401), answers the balance the ledger holds and a full history page,
newest first, with the cursor leading to the rest.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.floor_reads import Config, create_app
from service.accounts.tokens import Keyring, mint_access_token
from service.db import create_sessionmaker
from service.embedded import to_asyncpg_dsn
from service.ledger import service as ledger
from service.ledger.schemas import CreditRequest

SIGNING_KEY = secrets.token_urlsafe(32)


@pytest.fixture
async def floor(committed: AsyncEngine) -> AsyncIterator[FastAPI]:
    url = committed.url.render_as_string(hide_password=False)
    application = create_app(Config(to_asyncpg_dsn(url), (SIGNING_KEY,), pool=2))
    async with application.router.lifespan_context(application):
        yield application


async def _credited(engine: AsyncEngine, points: list[int]) -> uuid.UUID:
    participant = uuid.uuid4()
    now = datetime.now(UTC)
    async with create_sessionmaker(engine)() as session, session.begin():
        await session.execute(
            text("INSERT INTO participants (id, kind, display_name) VALUES (:id, 'citizen', 'r')"),
            {"id": participant},
        )
        for i, n in enumerate(points):
            request = CreditRequest(
                origin="floor-test",
                key=f"{participant}-{i}",
                participant_id=participant,
                points=n,
                grams=n,
                expires_at=now + timedelta(days=30 + i),
                credit_id=str(1000 + i),
                methodology_id="transit.metro",
                methodology_version=1,
            )
            await ledger.credit(session, [request], now=now)
    return participant


def _token(participant: uuid.UUID, key: str = SIGNING_KEY, **kwargs: object) -> str:
    return mint_access_token(
        Keyring.from_secrets(key),
        user_id=uuid.uuid4(),
        participant_id=participant,
        generation=0,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_floor_reads_answers_and_refuses(floor: FastAPI, committed: AsyncEngine) -> None:
    points = [120, 45, 300]
    participant = await _credited(committed, points)
    transport = httpx.ASGITransport(app=floor)
    async with httpx.AsyncClient(transport=transport, base_url="http://floor") as http:
        auth = {"authorization": f"Bearer {_token(participant)}"}
        balance = await http.get("/v1/app/balance", headers=auth)
        assert balance.status_code == 200
        assert balance.json() == {"available": sum(points), "on_hold": 0}
        async with create_sessionmaker(committed)() as session:
            held = await ledger.balance(session, participant)
        assert balance.json()["available"] == held.available

        page = await http.get("/v1/app/history?limit=2", headers=auth)
        assert page.status_code == 200
        body = page.json()
        assert [i["points"] for i in body["items"]] == [300, 45]
        assert [i["credit_id"] for i in body["items"]] == ["1002", "1001"]
        assert body["items"][0]["kind"] == "credit"
        assert body["next_cursor"] == str(body["items"][-1]["sequence"])
        rest = await http.get(f"/v1/app/history?limit=2&cursor={body['next_cursor']}", headers=auth)
        assert [i["points"] for i in rest.json()["items"]] == [120]
        assert rest.json()["next_cursor"] is None

        stranger = {"authorization": f"Bearer {_token(uuid.uuid4())}"}
        assert (await http.get("/v1/app/balance", headers=stranger)).json()["available"] == 0

        old = datetime.now(UTC) - timedelta(hours=1)
        refused = [
            {"authorization": f"Bearer {_token(participant, key=secrets.token_urlsafe(32))}"},
            {"authorization": f"Bearer {_token(participant, now=old)}"},
            {"authorization": f"Bearer {_token(participant)[:-4]}AAAA"},
            {"authorization": "Bearer not-a-jwt"},
            {},
        ]
        for headers in refused:
            for path in ("/v1/app/balance", "/v1/app/history?limit=5"):
                assert (await http.get(path, headers=headers)).status_code == 401, headers
