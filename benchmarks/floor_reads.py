"""Floor for the app-reads benchmark: the least a balance or history read can do.

Run (from the repository root), the same way the service is run:

    FLOOR_DATABASE_URL=postgresql://... FLOOR_JWT_SIGNING_KEYS=<current>[,<previous>...] \\
    .venv/bin/python -m uvicorn floor_reads:app --app-dir benchmarks --workers 2 \\
        --loop uvloop --http httptools --no-access-log

``benchmarks/bench_app_reads.py`` starts it with the service's worker count, on the service's
own database, with the service's JWT signing key, and sends it the same requests.

Each request: the bearer token is verified as ``service.accounts.tokens`` verifies an access
token (HS256 only, the key chosen by the ``kid`` header, which is derived from the key; the
claims ``sub pid gen iat exp jti typ`` required, ``typ`` = ``access``), else ``401``; then ONE
indexed SELECT on a pooled asyncpg connection (no transaction block), answered with orjson:

``GET /v1/app/balance``
    The participant's POINTS ledger account by its unique code: ``available`` (posted less
    held) and ``on_hold``.
``GET /v1/app/history?limit=N[&cursor=SEQ]``
    A page of the account's postings joined with their transactions, newest first (the
    ``(account_id, account_seq)`` unique index), shaped like the service's history page.

It does not read the user row (the service checks the token generation there), the pending
events, the debt, the grams or the expiring lots. Every worker counts its requests and
statements and prints them on shutdown: one ``floor-stats ...`` line on stderr.
"""

from __future__ import annotations

import hashlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import jwt
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "pid", "gen", "iat", "exp", "jti", "typ"]
MAX_LIMIT = 200

BALANCE_SQL = "SELECT posted, held FROM ledger_accounts WHERE code = $1"
HISTORY_SQL = """
SELECT p.account_seq, p.amount, t.kind, t.request, t.created_at
FROM ledger_postings p
JOIN ledger_transactions t ON t.id = p.transaction_id
WHERE p.account_id = (SELECT id FROM ledger_accounts WHERE code = $1)
  AND p.account_seq < $2
ORDER BY p.account_seq DESC
LIMIT $3
"""


def key_id(secret: str) -> str:
    """The ``kid`` of a signing key, as the service derives it."""
    return "k" + hashlib.sha256(b"carbon-points jwt kid\x00" + secret.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Config:
    database_url: str
    signing_keys: tuple[str, ...]
    pool: int = 10

    @classmethod
    def from_environment(cls) -> Config:
        env = os.environ
        keys = tuple(k for k in env["FLOOR_JWT_SIGNING_KEYS"].split(",") if k)
        return cls(env["FLOOR_DATABASE_URL"], keys, int(env.get("FLOOR_POOL", "10")))


@dataclass(slots=True)
class Stats:
    requests: dict[str, int] = field(default_factory=lambda: {"balance": 0, "history": 0})
    statements: dict[str, int] = field(default_factory=lambda: {"balance": 0, "history": 0})

    def line(self) -> str:
        parts = [f"floor-stats floor=reads pid={os.getpid()}"]
        for kind in ("balance", "history"):
            parts.append(f"{kind}_requests={self.requests[kind]}")
            parts.append(f"{kind}_statements={self.statements[kind]}")
        return " ".join(parts)


@dataclass(slots=True)
class State:
    pool: asyncpg.Pool
    keys: dict[str, str]
    stats: Stats


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _problem(status: int, slug: str, detail: str) -> Response:
    body = {"type": f"https://carbon-points.example/problems/{slug}", "status": status}
    body |= {"title": slug.replace("-", " "), "detail": detail}
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/problem+json",
        headers={"www-authenticate": "Bearer"} if status == 401 else None,
    )


def participant_of(keys: dict[str, str], authorization: str | None) -> uuid.UUID | None:
    """The participant of a valid access token, else None."""
    if not authorization or authorization[:7].lower() != "bearer ":
        return None
    token = authorization[7:].strip()
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM:
            return None
        secret = keys.get(header.get("kid"))  # type: ignore[arg-type]
        if secret is None:
            return None
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": REQUIRED_CLAIMS}
        )
        if claims.get("typ") != "access":
            return None
        return uuid.UUID(str(claims["pid"]))
    except (jwt.InvalidTokenError, ValueError, TypeError):
        return None


def create_app(config: Config | None = None) -> FastAPI:
    """The floor app; without `config`, the lifespan reads it from the environment."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = config or Config.from_environment()

        async def init(conn: asyncpg.Connection) -> None:
            await conn.set_type_codec(
                "jsonb", encoder=orjson.dumps, decoder=orjson.loads, schema="pg_catalog"
            )

        pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=1,
            max_size=settings.pool,
            init=init,
            # Idle during the service's slices: give the connections back.
            max_inactive_connection_lifetime=2.0,
            server_settings={"application_name": "carbon-points-floor-reads"},
        )
        keys = {key_id(secret): secret for secret in settings.signing_keys}
        app.state.floor = State(pool, keys, Stats())
        try:
            yield
        finally:
            print(app.state.floor.stats.line(), file=sys.stderr, flush=True)
            await pool.close()

    app = FastAPI(title="carbon-points app-reads floor", lifespan=lifespan)

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        state: State = request.app.state.floor
        async with state.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        return _json({"status": "ready"})

    @app.get("/v1/app/balance")
    async def balance(request: Request) -> Response:
        state: State = request.app.state.floor
        participant = participant_of(state.keys, request.headers.get("authorization"))
        if participant is None:
            return _problem(401, "unauthenticated", "send a valid access token")
        async with state.pool.acquire() as conn:
            row = await conn.fetchrow(BALANCE_SQL, f"participant:{participant}:POINTS")
        state.stats.requests["balance"] += 1
        state.stats.statements["balance"] += 1
        posted, held = (row["posted"], row["held"]) if row else (0, 0)
        return _json({"available": posted - held, "on_hold": held})

    @app.get("/v1/app/history")
    async def history(request: Request) -> Response:
        state: State = request.app.state.floor
        participant = participant_of(state.keys, request.headers.get("authorization"))
        if participant is None:
            return _problem(401, "unauthenticated", "send a valid access token")
        query = request.query_params
        try:
            limit = int(query.get("limit", "50"))
            before = int(query["cursor"]) if "cursor" in query else 2**62
        except ValueError:
            return _problem(422, "validation-failed", "limit and cursor are integers")
        if not 1 <= limit <= MAX_LIMIT:
            return _problem(422, "validation-failed", f"limit is 1 to {MAX_LIMIT}")
        async with state.pool.acquire() as conn:
            rows = await conn.fetch(HISTORY_SQL, f"participant:{participant}:POINTS", before, limit)
        state.stats.requests["history"] += 1
        state.stats.statements["history"] += 1
        items = []
        for seq, amount, kind, content, at in rows:
            items.append(
                {
                    "sequence": seq,
                    "kind": kind,
                    "points": amount,
                    "at": at,
                    "credit_id": content.get("credit_id"),
                    "methodology_id": content.get("methodology_id"),
                    "methodology_version": content.get("methodology_version"),
                    "reason": content.get("reason"),
                }
            )
        cursor = str(items[-1]["sequence"]) if len(items) == limit else None
        return _json({"items": items, "next_cursor": cursor})

    return app


app = create_app()
