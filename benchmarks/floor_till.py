"""Floor for the till benchmark: the least an exactly-once authorise and capture can do.

Run (from the repository root), the same way the service is run:

    FLOOR_DATABASE_URL=postgresql://... \\
    .venv/bin/python -m uvicorn floor_till:app --app-dir benchmarks --workers 2 \\
        --loop uvloop --http httptools --no-access-log

``benchmarks/bench_till.py`` starts it with the service's worker count on its own database
(``create_schema`` makes the tables of ``SCHEMA``), and sends it the same requests as the
service: ``Authorization: Bearer cpmk_<key id>_<secret>``, an ``Idempotency-Key`` on every POST,
the same paths and bodies; the answers have the service's shape (``RedemptionOut``).

``POST /v1/merchant/redemptions`` ``{"redemption_token": ..., "points": N}`` (201), then
``POST /v1/merchant/redemptions/{id}/capture`` ``{}`` or ``{"points": n}``. Each request is
ONE transaction of two statements (plus BEGIN and COMMIT, on one pooled connection):

1. **Claim** the idempotency key, checking the merchant key in the same statement:
   ``INSERT INTO till_idempotency ... SELECT ... FROM till_keys WHERE key_id AND secret hash
   match ... ON CONFLICT DO NOTHING RETURNING``. No row: one more statement tells a bad key
   (401) from a replay (the stored response, ``idempotent-replayed: true``), the same key with
   another body (422) or a key still running (409).
2. **The work**, one statement of data-modifying CTEs that also stores the response in the
   claimed row (built by ``jsonb_build_object``, returned and sent as is):

   * authorise: consume the single-use token (``UPDATE ... WHERE used_at IS NULL AND
     expires_at > now() RETURNING customer``), check-and-hold the balance in one ``UPDATE
     ... SET held = held + n WHERE posted - held >= n``, insert the redemption (the hold);
   * capture: resolve the hold once (``UPDATE till_redemptions ... WHERE captured_at IS NULL
     AND hold_expires_at > now()``), move the points (``posted -= n, held -= points``), and
     add them to one of 16 shards of the merchant's settlement balance (no merchant-wide row).

   A failed authorise or capture (bad code, not enough points, no such hold or already
   captured) rolls the transaction back and answers 422/404/409: nothing is stored, so a retry
   runs again (it cannot double anything: nothing was committed).

What it leaves out: offers and stock, terminals, a hash-chained ledger with lots, webhooks,
and storing failed responses. Every worker counts the requests and statements it ran and
prints them on shutdown, one ``floor-stats ...`` line on stderr.
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
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

PREFIX = "cpmk_"
SHARDS = 16
HOLD_SECONDS = 900
OPERATIONS = ("authorise", "capture")

SCHEMA = """
CREATE TABLE till_keys (
    key_id text PRIMARY KEY,
    merchant_id uuid NOT NULL,
    secret_hash bytea NOT NULL,
    revoked_at timestamptz
);
CREATE TABLE till_customers (
    id uuid PRIMARY KEY,
    posted bigint NOT NULL,
    held bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
    CHECK (posted - held >= 0)
);
CREATE TABLE till_tokens (
    token_hash bytea PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES till_customers,
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
CREATE TABLE till_idempotency (
    merchant_id uuid NOT NULL,
    key text NOT NULL,
    fingerprint bytea NOT NULL,
    status int,
    response jsonb,
    PRIMARY KEY (merchant_id, key)
);
CREATE TABLE till_redemptions (
    id uuid PRIMARY KEY,
    merchant_id uuid NOT NULL,
    customer_id uuid NOT NULL REFERENCES till_customers,
    points bigint NOT NULL CHECK (points > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    hold_expires_at timestamptz NOT NULL,
    captured bigint,
    captured_at timestamptz
);
CREATE TABLE till_settlement (
    merchant_id uuid NOT NULL,
    shard int NOT NULL,
    points bigint NOT NULL,
    PRIMARY KEY (merchant_id, shard)
);
"""

CLAIM_SQL = """
INSERT INTO till_idempotency (merchant_id, key, fingerprint)
SELECT k.merchant_id, $3, $4 FROM till_keys k
WHERE k.key_id = $1 AND k.secret_hash = $2 AND k.revoked_at IS NULL
ON CONFLICT DO NOTHING
RETURNING merchant_id
"""

LOOKUP_SQL = """
SELECT k.merchant_id, k.secret_hash = $2 AND k.revoked_at IS NULL AS valid,
       i.fingerprint, i.status, i.response
FROM till_keys k
LEFT JOIN till_idempotency i ON i.merchant_id = k.merchant_id AND i.key = $3
WHERE k.key_id = $1
"""

# $1 token hash, $2 points, $3 redemption id, $4 merchant, $5 idempotency key
AUTHORISE_SQL = f"""
WITH token AS (
    UPDATE till_tokens SET used_at = now()
    WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
    RETURNING customer_id
), hold AS (
    UPDATE till_customers c SET held = c.held + $2
    FROM token WHERE c.id = token.customer_id AND c.posted - c.held >= $2
    RETURNING c.id
), redemption AS (
    INSERT INTO till_redemptions (id, merchant_id, customer_id, points, hold_expires_at)
    SELECT $3, $4, hold.id, $2, now() + interval '{HOLD_SECONDS} seconds' FROM hold
    RETURNING id, points, created_at, hold_expires_at
), stored AS (
    UPDATE till_idempotency i SET status = 201, response = jsonb_build_object(
        'id', r.id, 'status', 'authorised', 'offer_id', NULL, 'points_authorised', r.points,
        'points_captured', 0, 'points_refunded', 0,
        'hold_expires_at', r.hold_expires_at, 'created_at', r.created_at)
    FROM redemption r WHERE i.merchant_id = $4 AND i.key = $5
    RETURNING i.response::text
)
SELECT EXISTS (SELECT FROM token) AS token_ok, (SELECT response FROM stored) AS response
"""

# $1 redemption id, $2 merchant, $3 points or NULL (all), $4 shard, $5 idempotency key
CAPTURE_SQL = """
WITH hold AS (
    UPDATE till_redemptions SET captured = coalesce($3, points), captured_at = now()
    WHERE id = $1 AND merchant_id = $2 AND captured_at IS NULL AND hold_expires_at > now()
      AND coalesce($3, points) <= points
    RETURNING id, customer_id, points, captured, created_at, hold_expires_at
), customer AS (
    UPDATE till_customers c SET posted = c.posted - h.captured, held = c.held - h.points
    FROM hold h WHERE c.id = h.customer_id
    RETURNING c.id
), settlement AS (
    INSERT INTO till_settlement (merchant_id, shard, points)
    SELECT $2, $4, captured FROM hold
    ON CONFLICT (merchant_id, shard)
    DO UPDATE SET points = till_settlement.points + excluded.points
    RETURNING shard
), stored AS (
    UPDATE till_idempotency i SET status = 200, response = jsonb_build_object(
        'id', h.id, 'status', 'captured', 'offer_id', NULL, 'points_authorised', h.points,
        'points_captured', h.captured, 'points_refunded', 0,
        'hold_expires_at', h.hold_expires_at, 'created_at', h.created_at)
    FROM hold h WHERE i.merchant_id = $2 AND i.key = $5
    RETURNING i.response::text
)
SELECT (SELECT response FROM stored) AS response,
       EXISTS (SELECT FROM till_redemptions WHERE id = $1 AND merchant_id = $2) AS found
"""


async def create_schema(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class Config:
    database_url: str
    pool: int = 10

    @classmethod
    def from_environment(cls) -> Config:
        env = os.environ
        return cls(env["FLOOR_DATABASE_URL"], int(env.get("FLOOR_POOL", "10")))


@dataclass(slots=True)
class Stats:
    """Per worker: requests, statements (BEGIN and COMMIT apart) and BEGIN/COMMIT/ROLLBACKs."""

    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OPERATIONS, 0))
    statements: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OPERATIONS, 0))
    control: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OPERATIONS, 0))

    def line(self) -> str:
        parts = [f"floor-stats floor=till pid={os.getpid()}"]
        for op in OPERATIONS:
            parts.append(f"{op}_requests={self.requests[op]}")
            parts.append(f"{op}_statements={self.statements[op]}")
            parts.append(f"{op}_begin_commit={self.control[op]}")
        return " ".join(parts)


@dataclass(slots=True)
class State:
    pool: asyncpg.Pool
    stats: Stats


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _problem(status: int, slug: str, detail: str) -> Response:
    body = {"type": f"https://carbon-points.example/problems/{slug}", "status": status}
    body |= {"title": slug.replace("-", " "), "detail": detail}
    return Response(orjson.dumps(body), status_code=status, media_type="application/problem+json")


class Refused(Exception):
    """An answer other than the work's: the transaction rolls back and this is sent."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _merchant_key(request: Request) -> tuple[str, bytes]:
    """(key id, SHA-256 of the secret) of ``Authorization: Bearer cpmk_<key id>_<secret>``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.startswith(PREFIX + "mk_"):
        raise Refused(_problem(401, "merchant-key-invalid", "send Authorization: Bearer cpmk_"))
    rest = token[len(PREFIX) :]
    split = rest.find("_", 3)
    if split < 0 or split == len(rest) - 1:
        raise Refused(_problem(401, "merchant-key-invalid", "malformed merchant key"))
    return rest[:split], hashlib.sha256(rest[split + 1 :].encode()).digest()


async def _claim(
    conn: asyncpg.Connection,
    request: Request,
    operation: str,
    body: bytes,
    counted: list[int],
) -> tuple[uuid.UUID, str]:
    """Claim the idempotency key (and check the merchant key): (merchant id, key)."""
    key_id, secret_hash = _merchant_key(request)
    key = request.headers.get("idempotency-key")
    if not key or len(key) > 255:
        raise Refused(_problem(400, "idempotency-key-missing", "send an Idempotency-Key"))
    fingerprint = hashlib.sha256(
        operation.encode() + b"\x00" + request.url.path.encode() + b"\x00" + body
    ).digest()
    counted[0] += 1
    merchant = await conn.fetchval(CLAIM_SQL, key_id, secret_hash, key, fingerprint)
    if merchant is not None:
        return merchant, key
    counted[0] += 1
    row = await conn.fetchrow(LOOKUP_SQL, key_id, secret_hash, key)
    if row is None or not row["valid"]:
        raise Refused(_problem(401, "merchant-key-invalid", "unknown or revoked merchant key"))
    if row["fingerprint"] != fingerprint:
        raise Refused(_problem(422, "idempotency-key-reused", "used for a different request"))
    if row["status"] is None:
        raise Refused(_problem(409, "request-in-progress", "retry when the first has finished"))
    replay = row["response"].encode()
    raise Refused(_json(replay, row["status"], headers={"idempotent-replayed": "true"}))


def create_app(config: Config | None = None) -> FastAPI:
    """The floor app; without `config`, the lifespan reads it from the environment."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = config or Config.from_environment()
        pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=1,
            max_size=settings.pool,
            # Idle during the service's slices: give the connections back.
            max_inactive_connection_lifetime=2.0,
            server_settings={"application_name": "carbon-points-floor-till"},
        )
        app.state.floor = State(pool, Stats())
        try:
            yield
        finally:
            print(app.state.floor.stats.line(), file=sys.stderr, flush=True)
            await pool.close()

    app = FastAPI(title="carbon-points till floor", lifespan=lifespan)

    async def transaction(request: Request, operation: str, work: Any) -> Response:
        """Claim, then the work, in one transaction; a Refused answer rolls it back."""
        state: State = request.app.state.floor
        body = await request.body()
        counted = [0]
        try:
            async with state.pool.acquire() as conn, conn.transaction():
                merchant, key = await _claim(conn, request, operation, body, counted)
                counted[0] += 1
                response: Response = await work(conn, body, merchant, key)
        except Refused as refused:
            response = refused.response
        state.stats.requests[operation] += 1
        state.stats.statements[operation] += counted[0]
        state.stats.control[operation] += 2
        return response

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        state: State = request.app.state.floor
        async with state.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        return _json({"status": "ready"})

    @app.post("/v1/merchant/redemptions")
    async def authorise(request: Request) -> Response:
        async def work(
            conn: asyncpg.Connection, body: bytes, merchant: uuid.UUID, key: str
        ) -> Response:
            try:
                data = orjson.loads(body)
                token = str(data["redemption_token"])
                points = int(data["points"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                raise Refused(
                    _problem(422, "validation-failed", "redemption_token and points")
                ) from None
            if not 1 <= points <= 10_000_000:
                raise Refused(_problem(422, "validation-failed", "points is 1 to 10,000,000"))
            row = await conn.fetchrow(
                AUTHORISE_SQL, token_hash(token), points, uuid.uuid4(), merchant, key
            )
            if not row["token_ok"]:
                raise Refused(_problem(422, "redemption-token-invalid", "unknown, used, expired"))
            if row["response"] is None:
                raise Refused(_problem(422, "insufficient-points", "not enough points"))
            return _json(row["response"].encode(), 201)

        return await transaction(request, "authorise", work)

    @app.post("/v1/merchant/redemptions/{redemption_id}/capture")
    async def capture(request: Request, redemption_id: str) -> Response:
        async def work(
            conn: asyncpg.Connection, body: bytes, merchant: uuid.UUID, key: str
        ) -> Response:
            try:
                target = uuid.UUID(redemption_id)
                data = orjson.loads(body) if body else {}
                points = data.get("points")
                if points is not None and (not isinstance(points, int) or points < 1):
                    raise ValueError
            except (orjson.JSONDecodeError, AttributeError, ValueError):
                raise Refused(
                    _problem(422, "validation-failed", "a redemption id; points")
                ) from None
            shard = target.int % SHARDS
            row = await conn.fetchrow(CAPTURE_SQL, target, merchant, points, shard, key)
            if row["response"] is not None:
                return _json(row["response"].encode())
            if not row["found"]:
                raise Refused(_problem(404, "redemption-not-found", "no such redemption here"))
            raise Refused(_problem(409, "hold-resolved", "captured, expired, or too many points"))

        return await transaction(request, "capture", work)

    return app


app = create_app()
