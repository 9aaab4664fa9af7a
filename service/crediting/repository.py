"""All of the crediting path's SQL. Functions take the session first and never commit."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ARRAY, String, Table, Uuid, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import CapUsage, Credit, IdentityLink, PartnerEvent

_events = cast(Table, PartnerEvent.__table__)
_credits = cast(Table, Credit.__table__)
_usage = cast(Table, CapUsage.__table__)
_links = cast(Table, IdentityLink.__table__)


# Reconciliation feed safety. `outcome_seq` values are taken inside transactions, so a value
# can commit after a higher one has. Every transaction that takes values first holds a shared
# advisory lock whose key carries the sequence's value at that moment (a lower bound of what it
# will take); the feed only pages up to the lowest such bound still held, so it never moves a
# partner's cursor past an outcome that has yet to commit.
_FEED_NAMESPACE = 0x4350  # "CP"
_FEED_VALUE_BITS = 48
_FEED_MASK = (1 << _FEED_VALUE_BITS) - 1


async def announce_outcome_writer(session: AsyncSession) -> None:
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock_shared("
            "(CAST(:ns AS bigint) << 48) | (SELECT last_value FROM partner_event_outcome_seq))"
        ),
        {"ns": _FEED_NAMESPACE},
    )


async def feed_safe_point(session: AsyncSession) -> int:
    """The highest outcome_seq below which every outcome is committed (or never will be)."""
    last = int(await session.scalar(text("SELECT last_value FROM partner_event_outcome_seq")) or 0)
    lowest_in_flight = await session.scalar(
        text(
            "SELECT min(((classid::bigint << 32) | objid::bigint) & :mask) FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND ((classid::bigint << 32) | objid::bigint) >> 48 = :ns"
        ),
        {"mask": _FEED_MASK, "ns": _FEED_NAMESPACE},
    )
    # A writer's values are above its bound (equal only on a brand-new sequence): stop below it.
    return last if lowest_in_flight is None else min(last, int(lowest_in_flight) - 1)


async def events_by_external_id(
    session: AsyncSession, partner_id: uuid.UUID, external_ids: Sequence[str]
) -> dict[str, Any]:
    if not external_ids:
        return {}
    rows = await session.execute(
        select(_events).where(
            _events.c.partner_id == partner_id, _events.c.external_id.in_(list(external_ids))
        )
    )
    return {row.external_id: row for row in rows}


async def lock_event(session: AsyncSession, partner_id: uuid.UUID, external_id: str) -> Any:
    return (
        await session.execute(
            select(_events)
            .where(_events.c.partner_id == partner_id, _events.c.external_id == external_id)
            .with_for_update()
        )
    ).first()


async def events_by_id(session: AsyncSession, ids: Sequence[int]) -> dict[int, Any]:
    if not ids:
        return {}
    rows = await session.execute(select(_events).where(_events.c.id.in_(list(ids))))
    return {row.id: row for row in rows}


async def subtract_usage(
    session: AsyncSession, participant_id: uuid.UUID, keys: Sequence[str], grams: int, points: int
) -> None:
    """Give back cap room (a retraction); the counters' CHECK keeps them from going negative."""
    if keys and (grams or points):
        await session.execute(
            update(_usage)
            .where(_usage.c.participant_id == participant_id, _usage.c.usage_key.in_(sorted(keys)))
            .values(grams=_usage.c.grams - grams, points=_usage.c.points - points)
        )


async def record_outcomes(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Write each event's outcome, each with a new outcome_seq (the feed's cursor)."""
    if not rows:
        return
    connection = await session.connection()
    await connection.execute(
        update(_events)
        .where(_events.c.id == bindparam("_id"))
        .values(
            status=bindparam("status"),
            participant_id=bindparam("participant_id"),
            methodology_id=bindparam("methodology_id"),
            methodology_version=bindparam("methodology_version"),
            grams=bindparam("grams"),
            points=bindparam("points"),
            reasons=bindparam("reasons"),
            duplicate_of=bindparam("duplicate_of"),
            credit_transaction_id=bindparam("credit_transaction_id"),
            outcome_seq=func.nextval("partner_event_outcome_seq"),
        ),
        [{"_id": row["id"], **{k: v for k, v in row.items() if k != "id"}} for row in rows],
    )


async def pending_for_subject(
    session: AsyncSession, partner_id: uuid.UUID, subject_hash: bytes
) -> list[Any]:
    rows = await session.execute(
        select(_events)
        .where(
            _events.c.partner_id == partner_id,
            _events.c.subject_hash == subject_hash,
            _events.c.status == "pending",
        )
        .order_by(_events.c.occurred_at, _events.c.id)
        .with_for_update()
    )
    return list(rows)


async def oldest_pending(session: AsyncSession, limit: int) -> list[Any]:
    rows = await session.execute(
        select(_events)
        .where(_events.c.status == "pending")
        .order_by(_events.c.occurred_at, _events.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows)


async def outcomes_after(
    session: AsyncSession, partner_id: uuid.UUID, after: int, limit: int
) -> list[Any]:
    safe = await feed_safe_point(session)
    rows = await session.execute(
        select(_events)
        .where(
            _events.c.partner_id == partner_id,
            _events.c.outcome_seq > after,
            _events.c.outcome_seq <= safe,
        )
        .order_by(_events.c.outcome_seq)
        .limit(limit)
    )
    return list(rows)


async def active_link(session: AsyncSession, partner_id: uuid.UUID, subject_hash: bytes) -> Any:
    return (
        await session.execute(
            select(_links).where(
                _links.c.partner_id == partner_id,
                _links.c.subject_hash == subject_hash,
                _links.c.unlinked_at.is_(None),
            )
        )
    ).first()


async def insert_link(session: AsyncSession, row: dict[str, Any]) -> bool:
    result = await session.execute(
        insert(_links)
        .values(row)
        .on_conflict_do_nothing(
            index_elements=["partner_id", "subject_hash"], index_where=text("unlinked_at IS NULL")
        )
        .returning(_links.c.id)
    )
    return result.scalar() is not None


# --- the set-based crediting path: a constant number of statements per request -----------

_LOCK_SUBJECTS_AND_ANNOUNCE = text(
    "SELECT pg_advisory_xact_lock_shared("
    "(CAST(:ns AS bigint) << 48) | (SELECT last_value FROM partner_event_outcome_seq)), "
    "(SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) AS k)"
)


def subject_lock_key(partner_id: uuid.UUID, subject_hash: bytes) -> int:
    """A partner identity's advisory lock key. Ingestion and linking take it, so that an
    event arriving as its identity is being linked is either seen by the link or sees the
    link, never neither. Subject keys are negative; participant keys are positive."""
    digest = hashlib.sha256(partner_id.bytes + subject_hash).digest()[:8]
    return -(int.from_bytes(digest, "big") >> 1) - 1


async def lock_subjects_and_announce(
    session: AsyncSession, subjects: Sequence[tuple[uuid.UUID, bytes]]
) -> None:
    """One statement: announce this transaction as an outcome writer (the feed's safety, see
    `announce_outcome_writer`) and lock the partner identities (see `lock_subjects`)."""
    await session.execute(
        _LOCK_SUBJECTS_AND_ANNOUNCE,
        {
            "ns": _FEED_NAMESPACE,
            "keys": sorted({subject_lock_key(p, s) for p, s in subjects}),
        },
    )


_CLAIM_AND_LINK = text(
    """
    WITH claimed AS (
        INSERT INTO partner_events (partner_id, external_id, content_hash, action_type,
            occurred_at, received_at, subject_hash, region, quantities, place_ids, status,
            reasons)
        SELECT partner_id, external_id, content_hash, action_type, occurred_at, received_at,
            subject_hash, region, CAST(quantities AS jsonb), CAST(place_ids AS jsonb),
            'received', CAST('[]' AS jsonb)
        FROM unnest(CAST(:partner_id AS uuid[]), CAST(:external_id AS text[]),
                    CAST(:content_hash AS bytea[]), CAST(:action_type AS text[]),
                    CAST(:occurred_at AS timestamptz[]), CAST(:received_at AS timestamptz[]),
                    CAST(:subject_hash AS bytea[]), CAST(:region AS text[]),
                    CAST(:quantities AS text[]), CAST(:place_ids AS text[]))
             AS e(partner_id, external_id, content_hash, action_type, occurred_at,
                  received_at, subject_hash, region, quantities, place_ids)
        ON CONFLICT (partner_id, external_id) DO NOTHING
        RETURNING id, partner_id, external_id, subject_hash
    )
    SELECT c.id, c.partner_id, c.external_id, l.participant_id
    FROM claimed AS c
    LEFT JOIN identity_links AS l
        ON l.partner_id = c.partner_id AND l.subject_hash = c.subject_hash
        AND l.unlinked_at IS NULL
    """
)


async def claim_and_link(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> dict[tuple[uuid.UUID, str], tuple[int, uuid.UUID | None]]:
    """Insert the events not seen before and look up their subjects' links. One statement.

    Rows go in sorted by (partner, external id), a fixed lock order for the unique key.
    Returns (partner, external id) -> (event id, linked participant or None) for the rows
    this call inserted. Runs after the subjects are locked, so a link committed by then is
    seen, and one not yet committed will see these events (`link_identity`).
    """
    if not rows:
        return {}
    ordered = sorted(rows, key=lambda r: (str(r["partner_id"]), str(r["external_id"])))
    columns = (
        "partner_id",
        "external_id",
        "content_hash",
        "action_type",
        "occurred_at",
        "received_at",
        "subject_hash",
        "region",
        "quantities",
        "place_ids",
    )
    result = await session.execute(
        _CLAIM_AND_LINK, {column: [r[column] for r in ordered] for column in columns}
    )
    return {
        (partner_id, external_id): (event_id, participant)
        for event_id, partner_id, external_id, participant in result
    }


async def events_by_keys(
    session: AsyncSession, keys: Sequence[tuple[uuid.UUID, str]]
) -> dict[tuple[uuid.UUID, str], Any]:
    """Stored events by (partner, external id), whoever sent them."""
    if not keys:
        return {}
    wanted = (
        select(
            func.unnest(bindparam("p", type_=ARRAY(Uuid()))).label("p"),
            func.unnest(bindparam("x", type_=ARRAY(String()))).label("x"),
        )
    ).subquery()
    rows = await session.execute(
        select(_events).join(
            wanted, (_events.c.partner_id == wanted.c.p) & (_events.c.external_id == wanted.c.x)
        ),
        {"p": [k[0] for k in keys], "x": [k[1] for k in keys]},
    )
    return {(row.partner_id, row.external_id): row for row in rows}


_LOAD_STATE = text(
    """
    SELECT 0 AS kind, u.participant_id, u.usage_key AS key, u.grams, u.points,
           CAST(NULL AS bigint) AS event_id, CAST(NULL AS uuid) AS partner_id,
           CAST(NULL AS timestamptz) AS occurred_at
    FROM cap_usage AS u
    JOIN unnest(CAST(:usage_participant AS uuid[]), CAST(:usage_key AS text[])) AS w(p, k)
        ON u.participant_id = w.p AND u.usage_key = w.k
    UNION ALL
    SELECT DISTINCT 1, c.participant_id, c.action_type, CAST(NULL AS bigint),
           CAST(NULL AS bigint), c.event_id, c.partner_id,
           c.occurred_at
    FROM unnest(CAST(:near_participant AS uuid[]), CAST(:near_type AS text[]),
                CAST(:near_start AS timestamptz[]), CAST(:near_end AS timestamptz[]))
         AS w(p, t, s, e)
    JOIN credits AS c
        ON c.participant_id = w.p AND c.action_type = w.t AND c.occurred_at BETWEEN w.s AND w.e
    JOIN partner_events AS ev ON ev.id = c.event_id
    WHERE ev.status <> 'retracted'
    """
)


async def load_state(
    session: AsyncSession,
    usage_slots: Sequence[tuple[uuid.UUID, str]],
    windows: Sequence[tuple[uuid.UUID, str, datetime, datetime]],
) -> tuple[dict[tuple[uuid.UUID, str], tuple[int, int]], list[Any]]:
    """Cap usage of these (participant, key) slots, and the standing credits in these
    (participant, action type, start, end) windows. One statement; run it after the
    participants' accounts are locked, so that it sees every credit committed before."""
    slots = sorted(set(usage_slots), key=lambda s: (str(s[0]), s[1]))
    near = sorted(set(windows), key=lambda w: (str(w[0]), w[1], w[2]))
    result = await session.execute(
        _LOAD_STATE,
        {
            "usage_participant": [s[0] for s in slots],
            "usage_key": [s[1] for s in slots],
            "near_participant": [w[0] for w in near],
            "near_type": [w[1] for w in near],
            "near_start": [w[2] for w in near],
            "near_end": [w[3] for w in near],
        },
    )
    usage: dict[tuple[uuid.UUID, str], tuple[int, int]] = {}
    standing: list[Any] = []
    for row in result:
        if row.kind == 0:
            usage[(row.participant_id, row.key)] = (row.grams, row.points)
        else:
            standing.append(row)
    return usage, standing


_WRITE_OUTCOMES = text(
    """
    WITH new_credits AS (
        INSERT INTO credits (event_id, participant_id, partner_id, action_type, occurred_at,
            received_at, region, methodology_id, methodology_version, inputs, usage_before,
            status, grams, points, transaction_id)
        SELECT event_id, participant_id, partner_id, action_type, occurred_at, received_at,
            region, methodology_id, methodology_version, CAST(inputs AS jsonb),
            CAST(usage_before AS jsonb), status, grams, points, transaction_id
        FROM unnest(CAST(:c_event AS bigint[]), CAST(:c_participant AS uuid[]),
                    CAST(:c_partner AS uuid[]), CAST(:c_action_type AS text[]),
                    CAST(:c_occurred_at AS timestamptz[]), CAST(:c_received_at AS timestamptz[]),
                    CAST(:c_region AS text[]), CAST(:c_methodology_id AS text[]),
                    CAST(:c_methodology_version AS integer[]), CAST(:c_inputs AS text[]),
                    CAST(:c_usage_before AS text[]), CAST(:c_status AS text[]),
                    CAST(:c_grams AS bigint[]), CAST(:c_points AS bigint[]),
                    CAST(:c_transaction AS bigint[]))
             AS c(event_id, participant_id, partner_id, action_type, occurred_at, received_at,
                  region, methodology_id, methodology_version, inputs, usage_before, status,
                  grams, points, transaction_id)
    ), added_usage AS (
        INSERT INTO cap_usage (participant_id, usage_key, grams, points)
        SELECT * FROM unnest(CAST(:u_participant AS uuid[]), CAST(:u_key AS text[]),
                             CAST(:u_grams AS bigint[]), CAST(:u_points AS bigint[]))
        ON CONFLICT (participant_id, usage_key) DO UPDATE
        SET grams = cap_usage.grams + excluded.grams, points = cap_usage.points + excluded.points
    )
    UPDATE partner_events AS e
    SET status = o.status, participant_id = o.participant_id,
        methodology_id = o.methodology_id, methodology_version = o.methodology_version,
        grams = o.grams, points = o.points, reasons = CAST(o.reasons AS jsonb),
        duplicate_of = o.duplicate_of, credit_transaction_id = o.transaction_id,
        outcome_seq = nextval('partner_event_outcome_seq')
    FROM unnest(CAST(:o_id AS bigint[]), CAST(:o_status AS text[]),
                CAST(:o_participant AS uuid[]), CAST(:o_methodology_id AS text[]),
                CAST(:o_methodology_version AS integer[]), CAST(:o_grams AS bigint[]),
                CAST(:o_points AS bigint[]), CAST(:o_reasons AS text[]),
                CAST(:o_duplicate_of AS bigint[]), CAST(:o_transaction AS bigint[]))
         AS o(id, status, participant_id, methodology_id, methodology_version, grams, points,
              reasons, duplicate_of, transaction_id)
    WHERE e.id = o.id
    """
)


async def write_outcomes(
    session: AsyncSession,
    credits: Sequence[dict[str, Any]],
    usage_added: dict[tuple[uuid.UUID, str], tuple[int, int]],
    outcomes: Sequence[dict[str, Any]],
) -> None:
    """Credits, cap usage and every event's outcome (each with a new outcome_seq, the feed's
    cursor): one statement, whatever the number of events."""
    usage = sorted(usage_added.items(), key=lambda item: (str(item[0][0]), item[0][1]))
    ordered = sorted(outcomes, key=lambda o: int(o["id"]))

    def column(rows: Sequence[dict[str, Any]], name: str) -> list[Any]:
        return [row[name] for row in rows]

    await session.execute(
        _WRITE_OUTCOMES,
        {
            "c_event": column(credits, "event_id"),
            "c_participant": column(credits, "participant_id"),
            "c_partner": column(credits, "partner_id"),
            "c_action_type": column(credits, "action_type"),
            "c_occurred_at": column(credits, "occurred_at"),
            "c_received_at": column(credits, "received_at"),
            "c_region": column(credits, "region"),
            "c_methodology_id": column(credits, "methodology_id"),
            "c_methodology_version": column(credits, "methodology_version"),
            "c_inputs": column(credits, "inputs"),
            "c_usage_before": column(credits, "usage_before"),
            "c_status": column(credits, "status"),
            "c_grams": column(credits, "grams"),
            "c_points": column(credits, "points"),
            "c_transaction": column(credits, "transaction_id"),
            "u_participant": [slot[0] for slot, _ in usage],
            "u_key": [slot[1] for slot, _ in usage],
            "u_grams": [amounts[0] for _, amounts in usage],
            "u_points": [amounts[1] for _, amounts in usage],
            "o_id": column(ordered, "id"),
            "o_status": column(ordered, "status"),
            "o_participant": column(ordered, "participant_id"),
            "o_methodology_id": column(ordered, "methodology_id"),
            "o_methodology_version": column(ordered, "methodology_version"),
            "o_grams": column(ordered, "grams"),
            "o_points": column(ordered, "points"),
            "o_reasons": column(ordered, "reasons"),
            "o_duplicate_of": column(ordered, "duplicate_of"),
            "o_transaction": column(ordered, "transaction_id"),
        },
    )
