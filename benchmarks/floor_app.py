"""Floors for the crediting benchmark: the least a signed crediting endpoint can do.

Run (from the repository root), the same way the service is run:

    FLOOR_MODE=minimal FLOOR_DATABASE_URL=postgresql://... FLOOR_KEY_ID=... FLOOR_SECRET=... \\
    FLOOR_PARTNER_ID=<uuid> FLOOR_PEPPER=... \\
    .venv/bin/python -m uvicorn floor_app:app --app-dir benchmarks --workers 2 \\
        --loop uvloop --http httptools --no-access-log

``benchmarks/bench_crediting.py`` starts it with the same number of worker processes as the
service and drives it with the same client and the same signed requests. Both endpoints of
the partner API are answered, ``POST /v1/partner/events`` and ``POST /v1/partner/event-batches``:
the HMAC signature is checked exactly as ``service.partners.auth`` checks it (same signed
content, same constant-time comparison; the secret comes from the environment, and there is no
Redis replay cache or rate limit), the body is parsed with orjson, and the answer has the
service's outcome shape, so ``integrations.AsyncCarbonPointsClient`` accepts it.

Two modes (``FLOOR_MODE``):

``minimal``
    The least the crediting path must do: the subject's keyed hash, one event row deduplicated
    with ``INSERT ... ON CONFLICT DO NOTHING RETURNING``, one posting pair and one balance
    update, set-based (``unnest`` arrays) in ONE statement whatever the batch size; a single
    statement is its own transaction. Its tables (``MINIMAL_SCHEMA``): ``floor_events``,
    ``floor_postings``, ``floor_balances``. Points: 1 per 100 m of ``distance_m``.

``samewrites``
    The rows the service writes for each credited metro event, written with hand-written
    set-based SQL into a database migrated to head (the real tables, indexes, foreign keys,
    constraints and triggers, whatever the migrations at head define): the ``partner_events``
    claim (ON CONFLICT DO NOTHING) and its outcome update with a new ``outcome_seq``; one
    ``credits`` row; the ``cap_usage`` upsert of each cap key (``transit.daily@<day>``,
    ``transit.monthly@<month>``); one ``ledger_transactions`` row (kind ``credit``, the request
    of ``CreditRequest.content()``); four ``ledger_postings`` (POINTS and GCO2E, issuance shard
    and participant) with consecutive ``account_seq`` and the real hash chain
    (``service.ledger.chain``), so ``ledger verify`` passes on its database; one ``ledger_lots``
    row and its ``open`` movement; the balances and chain heads of the accounts. New
    participants get their POINTS and GCO2E accounts on their first credit, as in the service.
    The participant is found through ``identity_links`` in the claim statement. In one
    transaction: 4 statements, plus 1 when the request re-sends events already stored:

    1. claim the events + look up their participants + create missing participant accounts;
    2. (re-sends only) read the stored outcomes of the events that were not claimed;
    3. insert the ledger transactions (``RETURNING id, created_at``, for the chain digests);
    4. lock the accounts, ascending id (``FOR NO KEY UPDATE``), reading the chain heads;
    5. one statement of data-modifying CTEs: postings, lots + movements, account balances and
       chain heads, credits, cap usage, event outcomes.

    What it leaves out, because it reads or locks rather than writes: any lock besides the
    account rows, the cross-partner duplicate search, the cap evaluation (it reads no cap
    usage, so it never caps: every event is ``credited`` with its full grams, and
    ``credits.usage_before`` is zero), the reconciliation feed's advisory lock, the debt
    accounts, and any read-back of stored outcomes. Grams: 46.7 g/km, rounded down
    (``transit.metro`` v1); points = grams. The issuance shard is one of 64, at random.

Every worker counts the statements it runs and prints the totals on shutdown, one line
``floor-stats ...`` on stderr (the benchmark reads them from the server log).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Importable as `floor_app` (uvicorn --app-dir benchmarks) from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from integrations import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_ID_HEADER,
    hmac_signature,
    signed_content,
)
from points_rules import Methodology, cap_windows, default_registry
from service.ledger.chain import link, posting_digest, transaction_digest

MODES = ("minimal", "samewrites")
TOLERANCE_SECONDS = 300
MAX_BATCH = 1000
LEDGER_ORIGIN = "crediting"
METRO = "transit.metro"
# transit.metro v1 (points_rules/library/transit.metro.yaml): 46.7 g per km, rounded down, and
# 1 point per gram. In tenths of a gram per km, so the arithmetic stays exact.
METRO_TENTHS_OF_GRAM_PER_KM = 467
ISSUANCE_SHARDS = 64
RETRIES = 3

MINIMAL_SCHEMA = (
    """
CREATE TABLE floor_events (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    partner_id uuid NOT NULL,
    external_id text NOT NULL,
    subject_hash bytea NOT NULL,
    status text NOT NULL DEFAULT 'credited',
    points bigint NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (partner_id, external_id)
)
""",
    """
CREATE TABLE floor_postings (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    event_id bigint NOT NULL,
    account bytea NOT NULL,
    amount bigint NOT NULL
)
""",
    """
CREATE TABLE floor_balances (
    account bytea PRIMARY KEY,
    points bigint NOT NULL
)
""",
)


async def create_minimal_schema(dsn: str) -> None:
    """The minimal floor's three tables, in an empty database."""
    conn = await asyncpg.connect(dsn)
    try:
        for statement in MINIMAL_SCHEMA:
            await conn.execute(statement)
    finally:
        await conn.close()


# --- configuration and statistics -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    mode: str
    database_url: str
    key_id: str
    secret: str
    partner_id: uuid.UUID
    pepper: str
    pool: int = 10
    validity: timedelta = timedelta(days=730)

    @classmethod
    def from_environment(cls) -> Config:
        env = os.environ
        mode = env.get("FLOOR_MODE", "minimal")
        if mode not in MODES:
            raise RuntimeError(f"FLOOR_MODE must be one of {', '.join(MODES)}, not {mode!r}")
        return cls(
            mode=mode,
            database_url=env["FLOOR_DATABASE_URL"],
            key_id=env["FLOOR_KEY_ID"],
            secret=env["FLOOR_SECRET"],
            partner_id=uuid.UUID(env["FLOOR_PARTNER_ID"]),
            pepper=env["FLOOR_PEPPER"],
            pool=int(env.get("FLOOR_POOL", "10")),
            validity=timedelta(days=int(env.get("FLOOR_VALIDITY_DAYS", "730"))),
        )


@dataclass(slots=True)
class Stats:
    """Per worker: requests and the SQL statements they ran (BEGIN and COMMIT apart)."""

    requests: dict[str, int] = field(default_factory=lambda: {"single": 0, "batch": 0})
    statements: dict[str, int] = field(default_factory=lambda: {"single": 0, "batch": 0})
    transaction_control: dict[str, int] = field(default_factory=lambda: {"single": 0, "batch": 0})
    retries: int = 0

    def line(self, mode: str) -> str:
        parts = [f"floor-stats mode={mode} pid={os.getpid()} retries={self.retries}"]
        for kind in ("single", "batch"):
            parts.append(
                f"{kind}_requests={self.requests[kind]} {kind}_statements={self.statements[kind]}"
                f" {kind}_begin_commit={self.transaction_control[kind]}"
            )
        return " ".join(parts)


@dataclass(slots=True)
class Counter:
    """Statements of one request (a retry counts again: it is work the server did)."""

    statements: int = 0
    transaction_control: int = 0


# --- the request side: signature, parsing, answers -------------------------------------------


def _problem(status: int, slug: str, detail: str) -> Response:
    return Response(
        orjson.dumps(
            {
                "type": f"https://carbon-points.example/problems/{slug}",
                "title": slug.replace("-", " "),
                "status": status,
                "detail": detail,
            }
        ),
        status_code=status,
        media_type="application/problem+json",
    )


def authenticate(config: Config, request: Request, body: bytes) -> Response | None:
    """None if the request is signed by the configured credential, else the 401 to send."""
    headers = request.headers
    key_id = headers.get(KEY_ID_HEADER)
    webhook_id = headers.get(WEBHOOK_ID_HEADER)
    timestamp_text = headers.get(TIMESTAMP_HEADER)
    signatures = headers.get(SIGNATURE_HEADER)
    if not (key_id and webhook_id and timestamp_text and signatures):
        return _problem(401, "signature-missing", "signature headers missing")
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        return _problem(401, "stale-timestamp", "webhook-timestamp must be Unix seconds")
    if abs(time.time() - timestamp) > TOLERANCE_SECONDS:
        return _problem(401, "stale-timestamp", "timestamp too far from the server's clock")
    if not hmac.compare_digest(key_id, config.key_id):
        return _problem(401, "unknown-key", f"no key {key_id}")
    target = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    path = target.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")
    try:
        content = signed_content(
            key_id=key_id,
            webhook_id=webhook_id,
            timestamp=timestamp,
            method=request.method,
            path=path,
            body=body,
        )
    except (ValueError, TypeError):
        return _problem(401, "bad-signature", "malformed signature headers")
    expected = hmac_signature(config.secret.encode(), content)
    if not any(hmac.compare_digest(expected, offered) for offered in signatures.split()):
        return _problem(401, "bad-signature", "no v1 signature matches the request")
    return None


@dataclass(slots=True)
class Item:
    """One well-formed event of a request."""

    external_id: str
    action_type: str
    occurred_at: datetime
    subject: bytes
    distance_m: int
    quantities: dict[str, Any]
    place_ids: list[str] | None


def _subject_hash(pepper: bytes, partner_id: uuid.UUID, subject_ref: str) -> bytes:
    # The service's keyed hash (service.partners.credentials.subject_hash), inlined.
    return hmac.new(
        pepper, partner_id.bytes + b"\x00" + subject_ref.encode(), hashlib.sha256
    ).digest()


def parse_item(config: Config, raw: Any) -> Item | str:
    """An Item, or why the event is rejected (a short message; no value is echoed)."""
    if not isinstance(raw, dict):
        return "an event must be an object"
    external_id = raw.get("external_id")
    action_type = raw.get("action_type")
    occurred_text = raw.get("occurred_at")
    subject_ref = raw.get("subject_ref")
    quantities = raw.get("quantities") or {}
    if not (isinstance(external_id, str) and 0 < len(external_id) <= 128):
        return "external_id missing"
    if not (isinstance(subject_ref, str) and subject_ref):
        return "subject_ref missing"
    if not isinstance(action_type, str) or not isinstance(quantities, dict):
        return "action_type or quantities missing"
    if config.mode == "samewrites" and action_type != METRO:
        return f"this floor credits {METRO} only"
    try:
        occurred_at = datetime.fromisoformat(str(occurred_text))
    except ValueError:
        return "occurred_at is not an RFC 3339 time"
    if occurred_at.tzinfo is None:
        return "occurred_at needs a time zone"
    distance = quantities.get("distance_m")
    if type(distance) is not int or not 0 <= distance <= 200_000:
        return "distance_m must be an integer number of metres"
    place_ids = raw.get("place_ids")
    return Item(
        external_id,
        action_type,
        occurred_at,
        _subject_hash(config.pepper.encode(), config.partner_id, subject_ref),
        distance,
        quantities,
        place_ids if isinstance(place_ids, list) else None,
    )


def _rejected(external_id: Any, detail: str) -> dict[str, Any]:
    return {
        "external_id": external_id if isinstance(external_id, str) else "",
        "status": "rejected",
        "problem": {"status": 422, "title": "validation failed", "detail": detail},
    }


def _json(document: Any) -> Response:
    return Response(orjson.dumps(document), media_type="application/json")


# --- minimal: one statement -------------------------------------------------------------------

_MINIMAL_CREDIT = """
WITH claimed AS (
    INSERT INTO floor_events (partner_id, external_id, subject_hash, points)
    SELECT $1, x, s, p FROM unnest($2::text[], $3::bytea[], $4::bigint[]) AS u(x, s, p)
    ORDER BY x
    ON CONFLICT (partner_id, external_id) DO NOTHING
    RETURNING id, external_id, subject_hash, points
), posted AS (
    INSERT INTO floor_postings (event_id, account, amount)
    SELECT id, '\\x00'::bytea, -points FROM claimed
    UNION ALL
    SELECT id, subject_hash, points FROM claimed
), balanced AS (
    INSERT INTO floor_balances (account, points)
    SELECT subject_hash, sum(points) FROM claimed GROUP BY subject_hash ORDER BY subject_hash
    ON CONFLICT (account) DO UPDATE SET points = floor_balances.points + excluded.points
)
SELECT external_id, id, points FROM claimed
"""

_MINIMAL_STORED = """
SELECT external_id, id, points FROM floor_events WHERE partner_id = $1 AND external_id = ANY($2)
"""


def _minimal_outcome(external_id: str, event_id: int, points: int) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "status": "credited",
        "points": points,
        "credit_id": str(event_id),
    }


async def credit_minimal(
    config: Config, conn: Any, items: Sequence[Item], counter: Counter
) -> dict[str, dict[str, Any]]:
    """external id -> outcome, for the distinct events of a request."""
    counter.statements += 1
    rows = await conn.fetch(
        _MINIMAL_CREDIT,
        config.partner_id,
        [i.external_id for i in items],
        [i.subject for i in items],
        [i.distance_m // 100 for i in items],
    )
    outcomes = {r["external_id"]: _minimal_outcome(*r) for r in rows}
    known = [i.external_id for i in items if i.external_id not in outcomes]
    if known:
        # Events stored earlier (a re-send): their original outcome. A read, after the write.
        counter.statements += 1
        for r in await conn.fetch(_MINIMAL_STORED, config.partner_id, known):
            outcomes[r["external_id"]] = _minimal_outcome(*r)
    return outcomes


# --- same writes: the service's rows, hand-written --------------------------------------------

_CLAIM = """
WITH claimed AS (
    INSERT INTO partner_events (partner_id, external_id, content_hash, action_type, occurred_at,
        received_at, subject_hash, region, quantities, place_ids, status, reasons)
    SELECT $1, x, h, a, o, $2, s, NULL, q::jsonb, pl::jsonb, 'received', '[]'::jsonb
    FROM unnest($3::text[], $4::bytea[], $5::text[], $6::timestamptz[], $7::bytea[],
                $8::text[], $9::text[]) AS u(x, h, a, o, s, q, pl)
    ORDER BY x
    ON CONFLICT (partner_id, external_id) DO NOTHING
    RETURNING id, external_id, subject_hash
), linked AS (
    SELECT c.id, c.external_id, l.participant_id
    FROM claimed c
    LEFT JOIN identity_links l
      ON l.partner_id = $1 AND l.subject_hash = c.subject_hash AND l.unlinked_at IS NULL
), opened AS (
    INSERT INTO ledger_accounts (code, owner_type, owner_id, asset, kind, bounded)
    SELECT 'participant:' || p::text || ':' || asset, 'participant', p, asset, 'participant', true
    FROM (SELECT DISTINCT participant_id AS p FROM linked WHERE participant_id IS NOT NULL) AS ps,
         unnest(ARRAY['POINTS', 'GCO2E']) AS asset
    ORDER BY 1
    ON CONFLICT (code) DO NOTHING
)
SELECT id, external_id, participant_id FROM linked
"""

_STORED = """
SELECT id, external_id, status, participant_id, methodology_id, methodology_version, grams,
       points, reasons, received_at
FROM partner_events WHERE partner_id = $1 AND external_id = ANY($2)
"""

_TRANSACTIONS = """
INSERT INTO ledger_transactions (origin, idempotency_key, kind, request)
SELECT $1, k, 'credit', r::jsonb FROM unnest($2::text[], $3::text[]) AS u(k, r)
ORDER BY k
ON CONFLICT (origin, idempotency_key) DO NOTHING
RETURNING idempotency_key, id, created_at
"""

_LOCK_ACCOUNTS = """
SELECT id, code, asset, posted, chain_seq, chain_hash FROM ledger_accounts
WHERE code = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE
"""

_WRITE = """
WITH postings AS (
    INSERT INTO ledger_postings (transaction_id, account_id, asset, amount, account_seq, chain_hash)
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[],
                         $6::bytea[])
), lots AS (
    INSERT INTO ledger_lots (account_id, transaction_id, amount, remaining, expires_at)
    SELECT a, t, n, n, e FROM unnest($7::bigint[], $8::bigint[], $9::bigint[],
                                     $10::timestamptz[]) AS u(a, t, n, e)
    RETURNING id, transaction_id, amount
), movements AS (
    INSERT INTO ledger_lot_movements (lot_id, kind, amount, transaction_id)
    SELECT id, 'open', amount, transaction_id FROM lots
), accounts AS (
    UPDATE ledger_accounts AS a
    SET posted = u.posted, chain_seq = u.seq, chain_hash = u.hash
    FROM unnest($11::bigint[], $12::bigint[], $13::bigint[], $14::bytea[])
        AS u(id, posted, seq, hash)
    WHERE a.id = u.id
), credited AS (
    INSERT INTO credits (event_id, participant_id, partner_id, action_type, occurred_at,
        received_at, region, methodology_id, methodology_version, inputs, usage_before, status,
        grams, points, transaction_id)
    SELECT e, p, $15, $16, o, $17, NULL, $18, $19, i::jsonb, b::jsonb, 'credited', g, n, t
    FROM unnest($20::bigint[], $21::uuid[], $22::timestamptz[], $23::text[], $24::text[],
                $25::bigint[], $26::bigint[], $27::bigint[]) AS u(e, p, o, i, b, g, n, t)
), usage AS (
    INSERT INTO cap_usage (participant_id, usage_key, grams, points)
    SELECT p, k, g, n FROM unnest($28::uuid[], $29::text[], $30::bigint[], $31::bigint[])
        AS u(p, k, g, n)
    ORDER BY p, k
    ON CONFLICT (participant_id, usage_key) DO UPDATE
    SET grams = cap_usage.grams + excluded.grams, points = cap_usage.points + excluded.points
)
UPDATE partner_events AS e
SET status = u.status, participant_id = u.participant, methodology_id = u.methodology,
    methodology_version = u.version, grams = u.g, points = u.n, reasons = u.r::jsonb,
    credit_transaction_id = u.t, outcome_seq = nextval('partner_event_outcome_seq')
FROM unnest($32::bigint[], $33::text[], $34::uuid[], $35::text[], $36::int[], $37::bigint[],
            $38::bigint[], $39::text[], $40::bigint[])
    AS u(id, status, participant, methodology, version, g, n, r, t)
WHERE e.id = u.id
"""

_WAITING_REASONS = [
    {
        "code": "subject_not_linked",
        "message": "waiting for the participant to link this identity",
    }
]


def _content_hash(item: Item) -> bytes:
    # The service's canonical form (service.crediting.service._content_hash), inlined.
    canonical = {
        "external_id": item.external_id,
        "action_type": item.action_type,
        "occurred_at": item.occurred_at.isoformat(),
        "subject": item.subject.hex(),
        "quantities": item.quantities,
        "region": None,
        "place_ids": item.place_ids,
    }
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).digest()


def _outcome(row: Any, received_at: datetime) -> dict[str, Any]:
    """The outcome a partner sees, like service.crediting.service.outcome_of."""
    credited = row["status"] in ("credited", "capped", "retracted")
    credited = credited and row["participant_id"] is not None
    return {
        "external_id": row["external_id"],
        "status": row["status"],
        "grams": row["grams"],
        "points": row["points"],
        "credit_id": str(row["id"]) if credited else None,
        "methodology_id": row["methodology_id"],
        "methodology_version": row["methodology_version"],
        "reasons": orjson.loads(row["reasons"]),
        "received_at": received_at.isoformat(),
    }


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows to one list per column (asyncpg arrays for unnest)."""
    return [[row[i] for row in rows] for i in range(width)]


@dataclass(slots=True)
class _Credit:
    event_id: int
    item: Item
    participant: uuid.UUID
    grams: int
    points: int
    key: str
    request: dict[str, Any]
    usage_keys: tuple[str, ...]


@dataclass(slots=True)
class _Account:
    id: int
    asset: str
    posted: int
    seq: int
    hash: bytes


async def credit_same_writes(
    config: Config,
    methodology: Methodology,
    conn: Any,
    items: Sequence[Item],
    counter: Counter,
) -> dict[str, dict[str, Any]]:
    received_at = datetime.now(UTC)
    counter.transaction_control += 2
    async with conn.transaction():
        counter.statements += 1
        claimed = await conn.fetch(
            _CLAIM,
            config.partner_id,
            received_at,
            [i.external_id for i in items],
            [_content_hash(i) for i in items],
            [i.action_type for i in items],
            [i.occurred_at for i in items],
            [i.subject for i in items],
            [orjson.dumps(i.quantities).decode() for i in items],
            [None if i.place_ids is None else orjson.dumps(i.place_ids).decode() for i in items],
        )
        by_external = {i.external_id: i for i in items}
        outcomes: dict[str, dict[str, Any]] = {}
        fresh = {r["external_id"] for r in claimed}
        known = [x for x in by_external if x not in fresh]
        if known:
            counter.statements += 1
            for row in await conn.fetch(_STORED, config.partner_id, known):
                outcomes[row["external_id"]] = _outcome(row, row["received_at"])
        if not claimed:
            return outcomes

        expires_at = received_at + config.validity
        credits: list[_Credit] = []
        waiting: list[tuple[int, str]] = []
        for row in claimed:
            item = by_external[row["external_id"]]
            if row["participant_id"] is None:
                waiting.append((row["id"], item.external_id))
                continue
            grams = item.distance_m * METRO_TENTHS_OF_GRAM_PER_KM // 10_000
            event_id = row["id"]
            request = {
                "reason": "action_credited",
                "participant_id": str(row["participant_id"]),
                "points": grams,
                "grams": grams,
                "expires_at": expires_at.isoformat(),
                "credit_id": str(event_id),
                "methodology_id": methodology.id,
                "methodology_version": methodology.version,
            }
            credits.append(
                _Credit(
                    event_id,
                    item,
                    row["participant_id"],
                    grams,
                    grams,
                    f"event:{event_id}",
                    request,
                    tuple(w.usage_key for w in cap_windows(methodology, item.occurred_at)),
                )
            )
        valued = sorted((c for c in credits if c.grams or c.points), key=lambda c: c.key)

        transaction_of: dict[int, int] = {}
        postings: list[tuple[int, int, str, int, int, bytes]] = []
        lots: list[tuple[int, int, int, datetime]] = []
        accounts: dict[str, _Account] = {}
        if valued:
            counter.statements += 1
            inserted = {
                r["idempotency_key"]: (r["id"], r["created_at"])
                for r in await conn.fetch(
                    _TRANSACTIONS,
                    LEDGER_ORIGIN,
                    [c.key for c in valued],
                    [orjson.dumps(c.request).decode() for c in valued],
                )
            }
            shard = int.from_bytes(os.urandom(2), "big") % ISSUANCE_SHARDS
            issuance = {a: f"program:issuance:{a}:{shard:02d}" for a in ("POINTS", "GCO2E")}
            codes = set(issuance.values())
            for c in valued:
                codes.add(f"participant:{c.participant}:POINTS")
                codes.add(f"participant:{c.participant}:GCO2E")
            counter.statements += 1
            for r in await conn.fetch(_LOCK_ACCOUNTS, sorted(codes)):
                accounts[r["code"]] = _Account(
                    r["id"], r["asset"], r["posted"], r["chain_seq"], bytes(r["chain_hash"])
                )

            def post(tx_id: int, digest: bytes, code: str, amount: int) -> None:
                if amount == 0:
                    return
                account = accounts[code]
                account.seq += 1
                account.hash = link(
                    account.hash,
                    posting_digest(digest, account.id, account.asset, amount, account.seq),
                )
                account.posted += amount
                postings.append(
                    (tx_id, account.id, account.asset, amount, account.seq, account.hash)
                )

            for c in valued:
                tx_id, created_at = inserted[c.key]
                transaction_of[c.event_id] = tx_id
                digest = transaction_digest(
                    tx_id, LEDGER_ORIGIN, c.key, "credit", c.request, created_at
                )
                points_code = f"participant:{c.participant}:POINTS"
                post(tx_id, digest, issuance["POINTS"], -c.points)
                post(tx_id, digest, points_code, c.points)
                post(tx_id, digest, issuance["GCO2E"], -c.grams)
                post(tx_id, digest, f"participant:{c.participant}:GCO2E", c.grams)
                if c.points:
                    lots.append((accounts[points_code].id, tx_id, c.points, expires_at))

        usage: dict[tuple[uuid.UUID, str], list[int]] = {}
        for c in credits:
            for key in c.usage_keys:
                slot = usage.setdefault((c.participant, key), [0, 0])
                slot[0] += c.grams
                slot[1] += c.points
        usage_rows = sorted(usage.items(), key=lambda kv: (str(kv[0][0]), kv[0][1]))
        touched = [a for a in accounts.values() if a.seq]
        outcome_rows = [
            (
                c.event_id,
                "credited",
                c.participant,
                methodology.id,
                methodology.version,
                c.grams,
                c.points,
                "[]",
                transaction_of.get(c.event_id),
            )
            for c in credits
        ] + [
            (
                event_id,
                "pending",
                None,
                methodology.id,
                methodology.version,
                0,
                0,
                orjson.dumps(_WAITING_REASONS).decode(),
                None,
            )
            for event_id, _ in waiting
        ]
        counter.statements += 1
        await conn.execute(
            _WRITE,
            [p[0] for p in postings],
            [p[1] for p in postings],
            [p[2] for p in postings],
            [p[3] for p in postings],
            [p[4] for p in postings],
            [p[5] for p in postings],
            [lot[0] for lot in lots],
            [lot[1] for lot in lots],
            [lot[2] for lot in lots],
            [lot[3] for lot in lots],
            [a.id for a in touched],
            [a.posted for a in touched],
            [a.seq for a in touched],
            [a.hash for a in touched],
            config.partner_id,
            METRO,
            received_at,
            methodology.id,
            methodology.version,
            [c.event_id for c in credits],
            [c.participant for c in credits],
            [c.item.occurred_at for c in credits],
            [
                orjson.dumps({k: str(v) for k, v in c.item.quantities.items()}).decode()
                for c in credits
            ],
            [orjson.dumps({k: [0, 0] for k in c.usage_keys}).decode() for c in credits],
            [c.grams for c in credits],
            [c.points for c in credits],
            [transaction_of.get(c.event_id) for c in credits],
            [k[0] for k, _ in usage_rows],
            [k[1] for k, _ in usage_rows],
            [v[0] for _, v in usage_rows],
            [v[1] for _, v in usage_rows],
            *_columns(outcome_rows, 9),
        )
    for c in credits:
        outcomes[c.item.external_id] = {
            "external_id": c.item.external_id,
            "status": "credited",
            "grams": c.grams,
            "points": c.points,
            "credit_id": str(c.event_id),
            "methodology_id": methodology.id,
            "methodology_version": methodology.version,
            "reasons": [],
            "received_at": received_at.isoformat(),
        }
    for _, external_id in waiting:
        outcomes[external_id] = {
            "external_id": external_id,
            "status": "pending",
            "credit_id": None,
            "methodology_id": methodology.id,
            "methodology_version": methodology.version,
            "reasons": _WAITING_REASONS,
            "received_at": received_at.isoformat(),
        }
    return outcomes


# --- the app ------------------------------------------------------------------------------------


Crediting = Callable[[Any, Sequence[Item], Counter], Awaitable[dict[str, dict[str, Any]]]]


@dataclass(slots=True)
class State:
    config: Config
    pool: Any
    credit: Crediting
    stats: Stats


def create_app(config: Config | None = None) -> FastAPI:
    """The floor app; without `config`, the lifespan reads it from the environment."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = config or Config.from_environment()
        methodology = default_registry().select(METRO, datetime.now(UTC), None)

        async def credit(conn: Any, items: Sequence[Item], counter: Counter) -> Any:
            if settings.mode == "minimal":
                return await credit_minimal(settings, conn, items, counter)
            return await credit_same_writes(settings, methodology, conn, items, counter)

        pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=1,
            max_size=settings.pool,
            # Idle between its slices of the benchmark: give the connections back, so the three
            # servers of a run stay within PostgreSQL's max_connections.
            max_inactive_connection_lifetime=2.0,
            server_settings={"application_name": f"carbon-points-floor-{settings.mode}"},
        )
        app.state.floor = State(settings, pool, credit, Stats())
        try:
            yield
        finally:
            print(app.state.floor.stats.line(settings.mode), file=sys.stderr, flush=True)
            await pool.close()

    app = FastAPI(title="carbon-points crediting floor", lifespan=lifespan)

    async def ingest(state: State, raws: list[Any], kind: str) -> list[dict[str, Any]]:
        parsed = [parse_item(state.config, raw) for raw in raws]
        distinct: dict[str, Item] = {}
        for item in parsed:
            if isinstance(item, Item):
                distinct.setdefault(item.external_id, item)
        outcomes: dict[str, dict[str, Any]] = {}
        counter = Counter()
        if distinct:
            for attempt in range(RETRIES):
                try:
                    async with state.pool.acquire() as conn:
                        outcomes = await state.credit(conn, list(distinct.values()), counter)
                    break
                except (
                    asyncpg.exceptions.DeadlockDetectedError,
                    asyncpg.exceptions.SerializationError,
                ):
                    state.stats.retries += 1
                    if attempt == RETRIES - 1:
                        raise
        state.stats.requests[kind] += 1
        state.stats.statements[kind] += counter.statements
        state.stats.transaction_control[kind] += counter.transaction_control
        results = []
        for raw, item in zip(raws, parsed, strict=True):
            if isinstance(item, str):
                results.append(
                    _rejected(raw.get("external_id") if isinstance(raw, dict) else None, item)
                )
            else:
                results.append(outcomes[item.external_id])
        return results

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        state: State = request.app.state.floor
        async with state.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        return _json({"status": "ready", "mode": state.config.mode})

    @app.post("/v1/partner/events")
    async def submit_event(request: Request) -> Response:
        state: State = request.app.state.floor
        body = await request.body()
        denied = authenticate(state.config, request, body)
        if denied is not None:
            return denied
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _problem(400, "malformed-body", "the body is not JSON")
        if not isinstance(raw, dict):
            return _problem(400, "bad-request", "the body must be one event object")
        (outcome,) = await ingest(state, [raw], "single")
        if outcome["status"] == "rejected":
            return _problem(422, "validation-failed", outcome["problem"]["detail"])
        return _json(outcome)

    @app.post("/v1/partner/event-batches")
    async def submit_batch(request: Request) -> Response:
        state: State = request.app.state.floor
        body = await request.body()
        denied = authenticate(state.config, request, body)
        if denied is not None:
            return denied
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _problem(400, "malformed-body", "the body is not JSON")
        events = raw.get("events") if isinstance(raw, dict) else None
        if not isinstance(events, list) or not 1 <= len(events) <= MAX_BATCH:
            return _problem(400, "bad-request", f'the body must be {{"events": [1..{MAX_BATCH}]}}')
        return _json({"results": await ingest(state, events, "batch")})

    return app


app = create_app()
