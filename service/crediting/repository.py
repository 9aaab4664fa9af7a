"""All of the crediting path's SQL. Functions take the session first and never commit."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Row,
    Select,
    String,
    Table,
    Uuid,
    bindparam,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import Reader, json_rows, json_text, reader
from service.ledger import credit_unpooled_and_standing_sql
from service.models import CapUsage, Credit, IdentityLink, PartnerEvent
from service.review import credit_not_under_review_sql
from service.review.rules import MAX_TRIP_MINUTES

_events = cast(Table, PartnerEvent.__table__)
_credits = cast(Table, Credit.__table__)
_usage = cast(Table, CapUsage.__table__)
_links = cast(Table, IdentityLink.__table__)

EventRow = Row[Any]
"""A `partner_events` row: every column, by name (`row.status`, `row.external_id`, ...). Rows,
not ORM objects: the crediting path reads hundreds a batch and never changes them in place."""
LinkRow = Row[Any]
"""An `identity_links` row, every column by name."""


_GROUP_LOCK_WAIT = text("SET LOCAL lock_timeout = '50ms'")


async def give_up_lock_waits_quickly(session: AsyncSession) -> None:
    """For the rest of this transaction a lock wait fails after 50 ms (group commit's groups
    give up rather than queue behind a batch; see `service.crediting.group_commit`)."""
    await session.execute(_GROUP_LOCK_WAIT)


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
) -> dict[str, EventRow]:
    if not external_ids:
        return {}
    rows = await session.execute(
        select(_events).where(
            _events.c.partner_id == partner_id, _events.c.external_id.in_(list(external_ids))
        )
    )
    return {row.external_id: row for row in rows}


async def lock_event(
    session: AsyncSession, partner_id: uuid.UUID, external_id: str
) -> EventRow | None:
    return (
        await session.execute(
            select(_events)
            .where(_events.c.partner_id == partner_id, _events.c.external_id == external_id)
            .with_for_update()
        )
    ).first()


async def events_by_id(session: AsyncSession, ids: Sequence[int]) -> dict[int, EventRow]:
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
) -> list[EventRow]:
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


async def oldest_pending(session: AsyncSession, limit: int) -> list[EventRow]:
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
) -> list[EventRow]:
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


async def active_link(
    session: AsyncSession, partner_id: uuid.UUID, subject_hash: bytes
) -> LinkRow | None:
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
    "(SELECT count(pg_advisory_xact_lock(CAST(k AS bigint))) "
    "FROM json_array_elements_text(CAST(:keys AS json)) AS k)"
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
            "keys": json_text(sorted({subject_lock_key(p, s) for p, s in subjects})),
        },
    )


# Claim the events not seen before (the unique key refuses a second row), then read each
# claimed subject's active link: one statement.
_CLAIM = """
    WITH claimed AS (
        INSERT INTO partner_events (partner_id, external_id, content_hash, action_type,
            occurred_at, received_at, subject_hash, region, quantities, place_ids, status,
            reasons)
        SELECT partner_id, external_id, decode(content_hash, 'hex'), action_type, occurred_at,
            received_at, decode(subject_hash, 'hex'), region, quantities, place_ids,
            'received', CAST('[]' AS jsonb)
        FROM json_to_recordset(CAST(:events AS json))
             AS e(partner_id uuid, external_id text, content_hash text, action_type text,
                  occurred_at timestamptz, received_at timestamptz, subject_hash text,
                  region text, quantities jsonb, place_ids jsonb)
        ON CONFLICT (partner_id, external_id) DO NOTHING
        RETURNING id, partner_id, external_id, subject_hash
    )
"""
_ACTIVE_LINK = """
    FROM claimed AS c
    LEFT JOIN identity_links AS l
        ON l.partner_id = c.partner_id AND l.subject_hash = c.subject_hash
        AND l.unlinked_at IS NULL
"""
_CLAIM_AND_LINK = text(
    _CLAIM + "SELECT c.id, c.partner_id, c.external_id, l.participant_id" + _ACTIVE_LINK
)

# With the identity-churn flag rule on: also how many participants linked each subject
# (still linked, or unlinked since :churn_since); one index probe per event
# (ix_identity_links_subject_history).
_CLAIM_AND_LINK_WITH_HOLDERS = text(
    _CLAIM  # noqa: S608 (constant SQL pieces; values are bound)
    + """
    SELECT c.id, c.partner_id, c.external_id, l.participant_id,
        (SELECT count(DISTINCT h.participant_id) FROM identity_links AS h
         WHERE h.partner_id = c.partner_id AND h.subject_hash = c.subject_hash
           AND (h.unlinked_at IS NULL OR h.unlinked_at >= CAST(:churn_since AS timestamptz))
        ) AS holders"""
    + _ACTIVE_LINK
)


async def claim_and_link(
    session: AsyncSession,
    rows: Sequence[dict[str, Any]],
    *,
    churn_since: datetime | None = None,
) -> dict[tuple[uuid.UUID, str], tuple[int, uuid.UUID | None, int | None]]:
    """Insert the events not seen before and look up their subjects' links. One statement.

    Rows go in sorted by (partner, external id), a fixed lock order for the unique key.
    Returns (partner, external id) -> (event id, linked participant or None) for the rows
    this call inserted. Runs after the subjects are locked, so a link committed by then is
    seen, and one not yet committed will see these events (`link_identity`).
    """
    if not rows:
        return {}
    ordered = sorted(rows, key=lambda r: (str(r["partner_id"]), str(r["external_id"])))
    for row in ordered:
        row["content_hash"] = bytes(row["content_hash"]).hex()
        row["subject_hash"] = bytes(row["subject_hash"]).hex()
    if churn_since is None:
        result = await session.execute(_CLAIM_AND_LINK, {"events": json_text(ordered)})
        return {
            (partner_id, external_id): (event_id, participant, None)
            for event_id, partner_id, external_id, participant in result
        }
    result = await session.execute(
        _CLAIM_AND_LINK_WITH_HOLDERS, {"events": json_text(ordered), "churn_since": churn_since}
    )
    return {
        (partner_id, external_id): (event_id, participant, int(holders))
        for event_id, partner_id, external_id, participant, holders in result
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
    FROM json_to_recordset(CAST(:slots AS json)) AS w(p uuid, k text)
    JOIN cap_usage AS u ON u.participant_id = w.p AND u.usage_key = w.k
    UNION ALL
    SELECT DISTINCT 1, c.participant_id, c.action_type, CAST(NULL AS bigint),
           CAST(NULL AS bigint), c.event_id, c.partner_id, c.occurred_at
    FROM json_to_recordset(CAST(:windows AS json))
         AS w(p uuid, t text, s timestamptz, e timestamptz)
    JOIN credits AS c
        ON c.participant_id = w.p AND c.action_type = w.t AND c.occurred_at BETWEEN w.s AND w.e
    JOIN partner_events AS ev ON ev.id = c.event_id
    WHERE ev.status <> 'retracted'
    """
)

# With trip flag rules on (velocity, overlap, travel): also each participant's trips around
# the events being credited (kind 2), by ix_credits_dedup, in the same statement. A trip's
# end is worked out here, as `flagging.Trip` would from `duration_s`: the stored inputs are
# the engine's canonical quantities (an integer or exact decimal text), whole seconds count,
# and a duration is capped at MAX_TRIP_MINUTES; anything else is an instant.
_LOAD_STATE_WITH_TRIPS = text(
    """
    SELECT 0 AS kind, u.participant_id, u.usage_key AS key, u.grams, u.points,
           CAST(NULL AS bigint) AS event_id, CAST(NULL AS uuid) AS partner_id,
           CAST(NULL AS timestamptz) AS occurred_at, CAST(NULL AS text) AS region,
           CAST(NULL AS timestamptz) AS ends_at
    FROM json_to_recordset(CAST(:slots AS json)) AS w(p uuid, k text)
    JOIN cap_usage AS u ON u.participant_id = w.p AND u.usage_key = w.k
    UNION ALL
    SELECT DISTINCT 1, c.participant_id, c.action_type, CAST(NULL AS bigint),
           CAST(NULL AS bigint), c.event_id, c.partner_id, c.occurred_at, NULL,
           CAST(NULL AS timestamptz)
    FROM json_to_recordset(CAST(:windows AS json))
         AS w(p uuid, t text, s timestamptz, e timestamptz)
    JOIN credits AS c
        ON c.participant_id = w.p AND c.action_type = w.t AND c.occurred_at BETWEEN w.s AND w.e
    JOIN partner_events AS ev ON ev.id = c.event_id
    WHERE ev.status <> 'retracted'
    UNION ALL
    SELECT 2, c.participant_id, c.action_type, CAST(NULL AS bigint), CAST(NULL AS bigint),
           c.event_id, c.partner_id, c.occurred_at, c.region,
           c.occurred_at + make_interval(secs => CASE
               WHEN c.inputs ->> 'duration_s' ~ '^[0-9]+([.][0-9]*)?$'
               THEN LEAST(CAST(split_part(c.inputs ->> 'duration_s', '.', 1) AS numeric),
                          CAST(:max_trip_seconds AS integer))
               ELSE 0 END)
    FROM unnest(CAST(:trip_p AS uuid[]), CAST(:trip_s AS timestamptz[]),
                CAST(:trip_e AS timestamptz[])) AS w(p, s, e)
    -- LATERAL: one ix_credits_dedup probe per participant, whatever the planner guesses of
    -- the recordset's size (joined plainly, it seq-scanned a young credits table).
    CROSS JOIN LATERAL (
        SELECT * FROM credits AS t
        WHERE t.participant_id = w.p AND t.action_type = ANY(CAST(:trip_types AS text[]))
          AND t.occurred_at BETWEEN w.s AND w.e
        OFFSET 0
    ) AS c
    JOIN partner_events AS ev ON ev.id = c.event_id
    WHERE ev.status <> 'retracted'
    """
)


async def load_state(
    session: AsyncSession,
    usage_slots: Sequence[tuple[uuid.UUID, str]],
    windows: Sequence[tuple[uuid.UUID, str, datetime, datetime]],
    trips: Sequence[tuple[uuid.UUID, datetime, datetime]] = (),
    trip_types: Sequence[str] = (),
) -> tuple[dict[tuple[uuid.UUID, str], tuple[int, int]], list[Any], list[Any]]:
    """Cap usage of these (participant, key) slots, and the standing credits in these
    (participant, action type, start, end) windows; with `trips` (participant, start, end),
    also the participants' credits of `trip_types` in those windows, for the flag rules (a
    standing credit may then be one of those rows: same columns). One statement; run it
    after the participants' accounts are locked, so that it sees every credit committed
    before."""
    slots = sorted(set(usage_slots), key=lambda s: (str(s[0]), s[1]))
    # A duplicate window inside its participant's trip window, of a trip type, is answered
    # from the trip rows (kind 2) rather than probed again: with the trip rules on, most
    # events cost one index probe here instead of two.
    spans = {p: (s, e) for p, s, e in trips}
    types = frozenset(trip_types)
    covered: dict[tuple[uuid.UUID, str], list[tuple[datetime, datetime]]] = {}
    probed: set[tuple[uuid.UUID, str, datetime, datetime]] = set()
    for window in set(windows):
        participant, kind, start, end = window
        span = spans.get(participant)
        if span is not None and kind in types and span[0] <= start and end <= span[1]:
            covered.setdefault((participant, kind), []).append((start, end))
        else:
            probed.add(window)
    near = sorted(probed, key=lambda w: (str(w[0]), w[1], w[2]))
    params: dict[str, Any] = {
        "slots": json_rows(p=[s[0] for s in slots], k=[s[1] for s in slots]),
        "windows": json_rows(
            p=[w[0] for w in near],
            t=[w[1] for w in near],
            s=[w[2] for w in near],
            e=[w[3] for w in near],
        ),
    }
    if trips:
        # The trips the flag rules compare with: (participant, start, end).
        # Typed arrays, not JSON: asyncpg sends them binary, and PostgreSQL unnests them
        # without parsing text.
        around = sorted(trips, key=lambda w: str(w[0]))
        params["trip_p"] = [w[0] for w in around]
        params["trip_s"] = [w[1] for w in around]
        params["trip_e"] = [w[2] for w in around]
        params["trip_types"] = sorted(trip_types)
        params["max_trip_seconds"] = MAX_TRIP_MINUTES * 60
    result = await session.execute(_LOAD_STATE_WITH_TRIPS if trips else _LOAD_STATE, params)
    usage: dict[tuple[uuid.UUID, str], tuple[int, int]] = {}
    standing: list[Any] = []
    found: list[Any] = []
    for row in result:
        if row.kind == 0:
            usage[(row.participant_id, row.key)] = (row.grams, row.points)
        elif row.kind == 1:
            standing.append(row)
        else:
            found.append(row)
    if covered:
        listed = {row.event_id for row in standing}
        for row in found:
            ranges = covered.get((row.participant_id, row.key))
            if (
                ranges
                and row.event_id not in listed
                and any(start <= row.occurred_at <= end for start, end in ranges)
            ):
                standing.append(row)
                listed.add(row.event_id)
    return usage, standing, found


_WRITE_OUTCOMES = text(
    """
    WITH new_credits AS (
        INSERT INTO credits (event_id, participant_id, partner_id, action_type, occurred_at,
            received_at, region, methodology_id, methodology_version, inputs, usage_before,
            status, grams, points, transaction_id)
        SELECT * FROM json_to_recordset(CAST(:credits AS json))
             AS c(event_id bigint, participant_id uuid, partner_id uuid, action_type text,
                  occurred_at timestamptz, received_at timestamptz, region text,
                  methodology_id text, methodology_version integer, inputs jsonb,
                  usage_before jsonb, status text, grams bigint, points bigint,
                  transaction_id bigint)
    ), added_usage AS (
        INSERT INTO cap_usage (participant_id, usage_key, grams, points)
        SELECT * FROM json_to_recordset(CAST(:usage AS json))
             AS u(participant_id uuid, usage_key text, grams bigint, points bigint)
        ON CONFLICT (participant_id, usage_key) DO UPDATE
        SET grams = cap_usage.grams + excluded.grams, points = cap_usage.points + excluded.points
    )
    UPDATE partner_events AS e
    SET status = o.status, participant_id = o.participant_id,
        methodology_id = o.methodology_id, methodology_version = o.methodology_version,
        grams = o.grams, points = o.points, reasons = o.reasons,
        duplicate_of = o.duplicate_of, credit_transaction_id = o.transaction_id,
        outcome_seq = nextval('partner_event_outcome_seq')
    FROM json_to_recordset(CAST(:outcomes AS json))
         AS o(id bigint, status text, participant_id uuid, methodology_id text,
              methodology_version integer, grams bigint, points bigint, reasons jsonb,
              duplicate_of bigint, transaction_id bigint)
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
    cursor): one statement, whatever the number of events. Rows are dicts of the columns;
    json/jsonb columns hold plain lists and dicts."""
    usage = sorted(usage_added.items(), key=lambda item: (str(item[0][0]), item[0][1]))
    await session.execute(
        _WRITE_OUTCOMES,
        {
            "credits": json_text(list(credits)),
            "usage": json_rows(
                participant_id=[slot[0] for slot, _ in usage],
                usage_key=[slot[1] for slot, _ in usage],
                grams=[amounts[0] for _, amounts in usage],
                points=[amounts[1] for _, amounts in usage],
            ),
            "outcomes": json_text(sorted(outcomes, key=lambda o: int(o["id"]))),
        },
    )


# --- a participant's own rows, for export (privacy) ------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A partner event credited (or judged) for the participant; never the subject's hash."""

    id: int
    external_id: str
    action_type: str
    occurred_at: datetime
    received_at: datetime
    region: str | None
    quantities: dict[str, Any]
    place_ids: list[str] | None
    status: str
    grams: int
    points: int
    methodology_id: str | None
    methodology_version: int | None
    reasons: list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class CreditRecord:
    event_id: int
    action_type: str
    occurred_at: datetime
    methodology_id: str
    methodology_version: int
    inputs: dict[str, Any]
    usage_before: dict[str, Any]
    status: str
    grams: int
    points: int
    transaction_id: int | None


@dataclass(frozen=True, slots=True)
class CapUsageRecord:
    usage_key: str
    grams: int
    points: int


async def participant_events(session: AsyncSession, participant_id: uuid.UUID) -> list[EventRecord]:
    rows = await session.execute(
        select(
            _events.c.id,
            _events.c.external_id,
            _events.c.action_type,
            _events.c.occurred_at,
            _events.c.received_at,
            _events.c.region,
            _events.c.quantities,
            _events.c.place_ids,
            _events.c.status,
            _events.c.grams,
            _events.c.points,
            _events.c.methodology_id,
            _events.c.methodology_version,
            _events.c.reasons,
        )
        .where(_events.c.participant_id == participant_id)
        .order_by(_events.c.id)
    )
    return [EventRecord(**row._mapping) for row in rows]


async def participant_credits(
    session: AsyncSession, participant_id: uuid.UUID
) -> list[CreditRecord]:
    rows = await session.execute(
        select(
            _credits.c.event_id,
            _credits.c.action_type,
            _credits.c.occurred_at,
            _credits.c.methodology_id,
            _credits.c.methodology_version,
            _credits.c.inputs,
            _credits.c.usage_before,
            _credits.c.status,
            _credits.c.grams,
            _credits.c.points,
            _credits.c.transaction_id,
        )
        .where(_credits.c.participant_id == participant_id)
        .order_by(_credits.c.event_id)
    )
    return [CreditRecord(*row) for row in rows]


async def participant_cap_usage(
    session: AsyncSession, participant_id: uuid.UUID
) -> list[CapUsageRecord]:
    rows = await session.execute(
        select(_usage.c.usage_key, _usage.c.grams, _usage.c.points)
        .where(_usage.c.participant_id == participant_id)
        .order_by(_usage.c.usage_key)
    )
    return [CapUsageRecord(*row) for row in rows]


# --- a participant's events and credits, read for the app (through `service.crediting.reads`) -


_PENDING_EVENTS = """
    SELECT count(*) FROM partner_events AS e
    JOIN identity_links AS l
      ON l.partner_id = e.partner_id AND l.subject_hash = e.subject_hash
     AND l.unlinked_at IS NULL
    WHERE l.participant_id = $1 AND e.status = 'pending'
"""


async def pending_events(source: AsyncSession | Reader, participant_id: uuid.UUID) -> int:
    """Events of the participant's linked identities still waiting (every balance read)."""
    rows = await reader(source).rows(_PENDING_EVENTS, participant_id)
    return int(rows[0][0])


@dataclass(frozen=True, slots=True)
class ReductionTotals:
    month: str
    action_type: str
    grams: int
    points: int
    credits: int


async def participant_reductions(
    session: AsyncSession,
    participant_id: uuid.UUID,
    tz: str,
    *,
    offset: int = 0,
    limit: int | None = None,
) -> list[ReductionTotals]:
    month = func.to_char(func.timezone(tz, Credit.occurred_at), "YYYY-MM")
    rows = await session.execute(
        select(
            month.label("month"),
            Credit.action_type,
            func.sum(Credit.grams),
            func.sum(Credit.points),
            func.count(),
        )
        .join(PartnerEvent, PartnerEvent.id == Credit.event_id)
        .where(Credit.participant_id == participant_id, PartnerEvent.status != "retracted")
        .group_by(month, Credit.action_type)
        .order_by(month.desc(), Credit.action_type)
        .offset(offset)
        .limit(limit)
    )
    return [ReductionTotals(m, a, int(g), int(p), int(n)) for m, a, g, p, n in rows]


async def credit_for(
    session: AsyncSession, participant_id: uuid.UUID, credit_id: int
) -> tuple[Credit, str] | None:
    """The participant's credit and its event's status, or None (unknown, or someone else's)."""
    row = (
        await session.execute(
            select(Credit, PartnerEvent.status)
            .join(PartnerEvent, PartnerEvent.id == Credit.event_id)
            .where(Credit.event_id == credit_id, Credit.participant_id == participant_id)
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


# --- programme reports (service.crediting.reports): set-based, one statement each -----------

_REDUCTIONS = text(
    # Credits of actions that happened in the period, summed by the programme's local month,
    # region, action type and partner; a retracted event's credit is counted apart.
    """
    SELECT date_trunc('month', c.occurred_at, :tz) AS month, c.region, c.action_type,
           c.partner_id,
           count(*) FILTER (WHERE ev.status <> 'retracted') AS credits,
           CAST(coalesce(sum(c.grams) FILTER (WHERE ev.status <> 'retracted'), 0) AS bigint)
               AS grams,
           CAST(coalesce(sum(c.points) FILTER (WHERE ev.status <> 'retracted'), 0) AS bigint)
               AS points,
           count(*) FILTER (WHERE ev.status = 'retracted') AS retracted,
           CAST(coalesce(sum(c.grams) FILTER (WHERE ev.status = 'retracted'), 0) AS bigint)
               AS retracted_grams
    FROM credits AS c
    JOIN partner_events AS ev ON ev.id = c.event_id
    WHERE c.occurred_at >= :start AND c.occurred_at < :end
    GROUP BY 1, c.region, c.action_type, c.partner_id
    ORDER BY 1, c.region NULLS FIRST, c.action_type, c.partner_id
    """
)


@dataclass(frozen=True, slots=True)
class ReductionRow:
    month: datetime  # the local month's first instant
    region: str | None
    action_type: str
    partner_id: uuid.UUID
    credits: int
    grams: int
    points: int
    retracted: int
    retracted_grams: int


async def reductions(
    session: AsyncSession, start: datetime, end: datetime, timezone: str
) -> list[ReductionRow]:
    """Credits whose action occurred in [start, end), grouped by month in `timezone`, region,
    action type and partner. One statement."""
    rows = await session.execute(_REDUCTIONS, {"start": start, "end": end, "tz": timezone})
    return [ReductionRow(*row) for row in rows]


_PARTNER_TRAFFIC = text(
    # Events received in the window by partner, local hour and current outcome.
    """
    SELECT partner_id, date_trunc('hour', received_at, :tz) AS hour, status, count(*) AS events
    FROM partner_events
    WHERE received_at >= :start AND received_at < :end
    GROUP BY partner_id, 2, status
    ORDER BY partner_id, 2, status
    """
)


@dataclass(frozen=True, slots=True)
class PartnerTrafficRow:
    partner_id: uuid.UUID
    hour: datetime
    status: str
    events: int


async def partner_traffic(
    session: AsyncSession, start: datetime, end: datetime, timezone: str
) -> list[PartnerTrafficRow]:
    """Events received in [start, end), counted by partner, hour (in `timezone`) and outcome.
    One statement."""
    rows = await session.execute(_PARTNER_TRAFFIC, {"start": start, "end": end, "tz": timezone})
    return [PartnerTrafficRow(*row) for row in rows]


# --- the back-test's reads (`service.methodologies.backtest`, through the service) ----------


@dataclass(frozen=True, slots=True)
class StoredCredit:
    """What the back-test reads of one stored credit: the action, the cap usage it saw, and
    the numbers it was given."""

    event_id: int
    participant_id: uuid.UUID
    action_type: str
    occurred_at: datetime
    received_at: datetime
    region: str | None
    methodology_id: str
    methodology_version: int
    inputs: dict[str, Any]
    usage_before: dict[str, Any]
    status: str
    grams: int
    points: int


_STORED_CREDIT_COLUMNS = (
    _credits.c.event_id,
    _credits.c.participant_id,
    _credits.c.action_type,
    _credits.c.occurred_at,
    _credits.c.received_at,
    _credits.c.region,
    _credits.c.methodology_id,
    _credits.c.methodology_version,
    _credits.c.inputs,
    _credits.c.usage_before,
    _credits.c.status,
    _credits.c.grams,
    _credits.c.points,
)


def _credits_in_window(
    methodology_id: str, start: datetime, end: datetime
) -> list[ColumnElement[bool]]:
    return [
        _credits.c.methodology_id == methodology_id,
        _credits.c.occurred_at >= start,
        _credits.c.occurred_at < end,
    ]


async def count_credits_in_window(
    session: AsyncSession, methodology_id: str, start: datetime, end: datetime
) -> int:
    """How many stored credits a back-test of [start, end) will read (for a progress bar)."""
    query = (
        select(func.count())
        .select_from(_credits)
        .where(*_credits_in_window(methodology_id, start, end))
    )
    return int(await session.scalar(query) or 0)


async def credits_in_window(
    session: AsyncSession, methodology_id: str, start: datetime, end: datetime, *, batch: int
) -> AsyncIterator[list[StoredCredit]]:
    """The stored credits of one methodology in [start, end), in crediting order, one page of
    at most `batch` at a time (keyset on the event id: each page is one indexed range read,
    so memory stays one page whatever the window holds). Read-only."""
    after = -1
    while True:
        rows = (
            await session.execute(
                select(*_STORED_CREDIT_COLUMNS)
                .where(
                    *_credits_in_window(methodology_id, start, end),
                    _credits.c.event_id > after,
                )
                .order_by(_credits.c.event_id)
                .limit(batch)
            )
        ).all()
        if rows:
            yield [StoredCredit(*tuple(row)) for row in rows]
        if len(rows) < batch:
            return
        after = rows[-1].event_id


@dataclass(frozen=True, slots=True)
class UncreditedEvent:
    """What the back-test reads of one stored event that has an outcome but no credit
    (ineligible, implausible, expired, pending, duplicate, or retracted before crediting).

    `participant_id` is the stored one (a duplicate has it) or else the participant whose
    identity link to the partner's subject stood when the event was received: whom a
    methodology accepting it would have credited. None: nobody was linked then."""

    event_id: int
    participant_id: uuid.UUID | None
    action_type: str
    occurred_at: datetime
    received_at: datetime
    region: str | None
    methodology_id: str
    methodology_version: int
    quantities: dict[str, Any]
    status: str
    reasons: list[dict[str, str]]


# Statuses that always come with a credit row, and the transient one before any outcome.
_NOT_AN_UNCREDITED_OUTCOME = ("received", "credited", "capped")


def _uncredited_in_window(
    methodology_id: str, start: datetime, end: datetime
) -> list[ColumnElement[bool]]:
    has_credit = select(_credits.c.event_id).where(_credits.c.event_id == _events.c.id).exists()
    return [
        _events.c.methodology_id == methodology_id,
        _events.c.occurred_at >= start,
        _events.c.occurred_at < end,
        _events.c.status.not_in(_NOT_AN_UNCREDITED_OUTCOME),
        ~has_credit,
    ]


_LINKED_AT_RECEIPT = (
    select(_links.c.participant_id)
    .where(
        _links.c.partner_id == _events.c.partner_id,
        _links.c.subject_hash == _events.c.subject_hash,
        _links.c.linked_at <= _events.c.received_at,
        or_(_links.c.unlinked_at.is_(None), _links.c.unlinked_at > _events.c.received_at),
    )
    .order_by(_links.c.linked_at.desc())
    .limit(1)
    .scalar_subquery()
)

_UNCREDITED_EVENT_COLUMNS = (
    _events.c.id,
    func.coalesce(_events.c.participant_id, _LINKED_AT_RECEIPT),
    _events.c.action_type,
    _events.c.occurred_at,
    _events.c.received_at,
    _events.c.region,
    _events.c.methodology_id,
    _events.c.methodology_version,
    _events.c.quantities,
    _events.c.status,
    _events.c.reasons,
)


async def count_uncredited_events_in_window(
    session: AsyncSession, methodology_id: str, start: datetime, end: datetime
) -> int:
    """How many stored events without a credit a back-test of [start, end) will read."""
    query = (
        select(func.count())
        .select_from(_events)
        .where(*_uncredited_in_window(methodology_id, start, end))
    )
    return int(await session.scalar(query) or 0)


async def uncredited_events_in_window(
    session: AsyncSession, methodology_id: str, start: datetime, end: datetime, *, batch: int
) -> AsyncIterator[list[UncreditedEvent]]:
    """The stored events judged under one methodology in [start, end) (by when they
    occurred) that have an outcome but no credit, by event id (the order of the credits
    stream), one page of at most `batch` at a time (keyset on the event id). Read-only."""
    after = -1
    while True:
        rows = (
            await session.execute(
                select(*_UNCREDITED_EVENT_COLUMNS)
                .where(*_uncredited_in_window(methodology_id, start, end), _events.c.id > after)
                .order_by(_events.c.id)
                .limit(batch)
            )
        ).all()
        if rows:
            yield [UncreditedEvent(*row) for row in rows]
        if len(rows) < batch:
            return
        after = rows[-1][0]


_USAGE_SEEN = text(
    """
    SELECT w.e AS event_id, w.k AS usage_key,
           CAST(c.usage_before -> w.k ->> 0 AS bigint) + c.grams AS grams,
           CAST(c.usage_before -> w.k ->> 1 AS bigint) + c.points AS points
    FROM json_to_recordset(CAST(:wanted AS json)) AS w(e bigint, p uuid, k text)
    CROSS JOIN LATERAL (
        SELECT c.usage_before, c.grams, c.points
        FROM credits AS c
        WHERE c.participant_id = w.p AND c.event_id < w.e AND (c.usage_before -> w.k) IS NOT NULL
        ORDER BY c.event_id DESC
        LIMIT 1
    ) AS c
    """
)


async def usage_seen(
    session: AsyncSession, wanted: Sequence[tuple[int, uuid.UUID, str]]
) -> dict[tuple[int, str], tuple[int, int]]:
    """For each (event id, participant, usage key): the cap usage stored just after the
    participant's last credit counted against that key before that event (in event id
    order, the back-test's crediting order), as (grams, points). Absent: no such credit, so
    nothing was used. One statement. A credit retracted in between still counts (when a
    retraction happened is not stored)."""
    if not wanted:
        return {}
    rows = await session.execute(
        _USAGE_SEEN,
        {
            "wanted": json_rows(
                e=[w[0] for w in wanted], p=[w[1] for w in wanted], k=[w[2] for w in wanted]
            )
        },
    )
    return {(row.event_id, row.usage_key): (int(row.grams), int(row.points)) for row in rows}


_PARTNER_VOLUMES = text(
    """
    SELECT partner_id,
           count(*) FILTER (WHERE received_at >= CAST(:hour_ago AS timestamptz)) AS last_hour,
           count(*) FILTER (WHERE received_at < CAST(:hour_ago AS timestamptz)) AS before
    FROM partner_events
    WHERE received_at >= CAST(:since AS timestamptz)
    GROUP BY partner_id
    """
)


async def partner_volumes(
    session: AsyncSession, now: datetime, baseline_hours: int
) -> dict[uuid.UUID, tuple[int, int]]:
    """Events received per partner in the last hour, and in the `baseline_hours` before it
    (partner id -> (last hour, before)). One statement over the BRIN index on received_at;
    run by the flag rules' refresher, never on the crediting path."""
    from datetime import timedelta

    hour_ago = now - timedelta(hours=1)
    rows = await session.execute(
        _PARTNER_VOLUMES,
        {"hour_ago": hour_ago, "since": hour_ago - timedelta(hours=baseline_hours)},
    )
    return {row.partner_id: (int(row.last_hour), int(row.before)) for row in rows}


# --- identity links, for the participants' app and privacy (through `service.crediting.identity`)


@dataclass(frozen=True, slots=True)
class ActiveLink:
    id: int
    partner_id: uuid.UUID
    linked_at: datetime


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """A link, active or ended: the keyed hash of the identity, never the number itself."""

    id: int
    subject_hash: bytes
    linked_at: datetime
    unlinked_at: datetime | None
    partner_id: uuid.UUID


async def active_links(
    session: AsyncSession,
    participant_id: uuid.UUID,
    *,
    offset: int = 0,
    limit: int | None = None,
) -> list[ActiveLink]:
    rows = await session.execute(
        select(_links.c.id, _links.c.partner_id, _links.c.linked_at)
        .where(_links.c.participant_id == participant_id, _links.c.unlinked_at.is_(None))
        .order_by(_links.c.linked_at, _links.c.id)
        .offset(offset)
        .limit(limit)
    )
    return [ActiveLink(*row) for row in rows]


async def end_link(
    session: AsyncSession, participant_id: uuid.UUID, link_id: int, now: datetime
) -> bool:
    """Mark the participant's active link unlinked; False when there is no such link."""
    result = await session.execute(
        update(_links)
        .where(
            _links.c.id == link_id,
            _links.c.participant_id == participant_id,
            _links.c.unlinked_at.is_(None),
        )
        .values(unlinked_at=now)
        .returning(_links.c.id)
    )
    return result.scalar() is not None


async def link_records(session: AsyncSession, participant_id: uuid.UUID) -> list[LinkRecord]:
    rows = await session.execute(
        select(
            _links.c.id,
            _links.c.subject_hash,
            _links.c.linked_at,
            _links.c.unlinked_at,
            _links.c.partner_id,
        )
        .where(_links.c.participant_id == participant_id)
        .order_by(_links.c.id)
    )
    return [LinkRecord(*row) for row in rows]


async def delete_links(session: AsyncSession, participant_id: uuid.UUID) -> None:
    await session.execute(delete(_links).where(_links.c.participant_id == participant_id))


# --- what a leaderboard ranks (through `service.crediting.reads`) -----------------------------


def credited_grams(
    participant_ids: Select[uuid.UUID], start: datetime, end: datetime
) -> Select[uuid.UUID, int]:
    """Grams credited to each of `participant_ids` in [start, end), retracted events left
    out: a statement for the caller to rank, join or limit."""
    grams = func.sum(_credits.c.grams)
    return (
        select(_credits.c.participant_id, grams.label("grams"))
        .join(_events, _events.c.id == _credits.c.event_id)
        .where(
            _credits.c.participant_id.in_(participant_ids),
            _credits.c.occurred_at >= start,
            _credits.c.occurred_at < end,
            _events.c.status != "retracted",
        )
        .group_by(_credits.c.participant_id)
    )


# --- pooling into certified reductions (`service.reductions`) ---------------------------------


@dataclass(frozen=True, slots=True)
class PoolableCredit:
    event_id: int
    transaction_id: int
    participant_id: uuid.UUID
    grams: int
    action_type: str
    methodology_version: int


_POOLABLE = text(
    # THE eligibility rule of a pooling run, in one statement: credited grams of the pool's
    # methodology (version range), region and vintage, received at least the settle period
    # ago (past the window in which partners retract), neither reversed nor pooled already
    # (the ledger's condition), and not under review (an open flag holds its points until a
    # reviewer decides; review's condition). Flags are written in the credit's own
    # transaction, so a credit this reads has its flag, if any, already visible.
    """
    SELECT c.event_id, c.transaction_id, c.participant_id, c.grams, c.action_type,
           c.methodology_version
    FROM credits AS c
    WHERE c.methodology_id = :methodology_id
      AND c.methodology_version BETWEEN :version_min AND :version_max
      AND c.region = :region
      AND c.occurred_at >= :vintage_start AND c.occurred_at < :vintage_end
      AND c.received_at <= :received_before
      AND c.status IN ('credited', 'capped')
      AND c.grams > 0
      AND c.transaction_id IS NOT NULL
      AND """  # noqa: S608 (the ledger's constant condition, never a value)
    + credit_unpooled_and_standing_sql("c.transaction_id")
    + " AND "
    + credit_not_under_review_sql("c.event_id")
    + """
    ORDER BY c.event_id
    LIMIT :limit
    """
)


async def poolable_credits(
    session: AsyncSession,
    *,
    methodology_id: str,
    version_min: int,
    version_max: int,
    region: str,
    vintage_start: datetime,
    vintage_end: datetime,
    received_before: datetime,
    limit: int,
) -> list[PoolableCredit]:
    rows = await session.execute(
        _POOLABLE,
        {
            "methodology_id": methodology_id,
            "version_min": version_min,
            "version_max": version_max,
            "region": region,
            "vintage_start": vintage_start,
            "vintage_end": vintage_end,
            "received_before": received_before,
            "limit": limit,
        },
    )
    return [PoolableCredit(*row) for row in rows]
