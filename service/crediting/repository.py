"""All of the crediting path's SQL. Functions take the session first and never commit."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, text, update
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


async def claim_events(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> dict[str, tuple[int, int]]:
    """Insert events not seen before (sorted by external id, a fixed lock order).

    Returns external id -> (event id, outcome_seq) for the rows this call inserted.
    """
    if not rows:
        return {}
    ordered = sorted(rows, key=lambda row: str(row["external_id"]))
    # Rows as parameters of one cached statement: compiling a 500-row VALUES every call
    # would cost more than the insert.
    result = await session.execute(
        insert(_events)
        .on_conflict_do_nothing(index_elements=["partner_id", "external_id"])
        .returning(_events.c.external_id, _events.c.id, _events.c.outcome_seq),
        ordered,
    )
    return {external_id: (event_id, seq) for external_id, event_id, seq in result}


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


async def linked_participants(
    session: AsyncSession, partner_id: uuid.UUID, subject_hashes: Sequence[bytes]
) -> dict[bytes, uuid.UUID]:
    if not subject_hashes:
        return {}
    rows = await session.execute(
        select(_links.c.subject_hash, _links.c.participant_id).where(
            _links.c.partner_id == partner_id,
            _links.c.subject_hash.in_(list(set(subject_hashes))),
            _links.c.unlinked_at.is_(None),
        )
    )
    return {bytes(subject): participant for subject, participant in rows}


async def lock_participants(session: AsyncSession, participant_ids: Sequence[uuid.UUID]) -> None:
    """Serialise crediting per participant (dedup and caps), in one fixed order."""
    keys = sorted({p.int & 0x7FFF_FFFF_FFFF_FFFF for p in participant_ids})
    if keys:
        await session.execute(
            text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
            {"keys": keys},
        )


async def lock_subjects(
    session: AsyncSession, partner_id: uuid.UUID, subject_hashes: Sequence[bytes]
) -> None:
    """Serialise linking and ingestion per partner identity, so that an event arriving as
    its identity is being linked is either seen by the link or sees the link, never neither.

    Subject keys are negative; participant keys are positive: the two never collide.
    """
    keys = sorted(
        {
            -(int.from_bytes(hashlib.sha256(partner_id.bytes + s).digest()[:8], "big") >> 1) - 1
            for s in subject_hashes
        }
    )
    if keys:
        await session.execute(
            text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
            {"keys": keys},
        )


async def nearby_credits(
    session: AsyncSession,
    participant_ids: Sequence[uuid.UUID],
    action_types: Sequence[str],
    start: datetime,
    end: datetime,
) -> list[Any]:
    """Standing credits (not retracted) of these participants and action types in a window."""
    rows = await session.execute(
        select(
            _credits.c.event_id,
            _credits.c.partner_id,
            _credits.c.participant_id,
            _credits.c.action_type,
            _credits.c.occurred_at,
        )
        .join(_events, _events.c.id == _credits.c.event_id)
        .where(
            _credits.c.participant_id.in_(list(set(participant_ids))),
            _credits.c.action_type.in_(list(set(action_types))),
            _credits.c.occurred_at.between(start, end),
            _events.c.status != "retracted",
        )
    )
    return list(rows)


async def usage(
    session: AsyncSession, participant_ids: Sequence[uuid.UUID], keys: Sequence[str]
) -> dict[tuple[uuid.UUID, str], tuple[int, int]]:
    if not keys:
        return {}
    rows = await session.execute(
        select(_usage.c.participant_id, _usage.c.usage_key, _usage.c.grams, _usage.c.points).where(
            _usage.c.participant_id.in_(list(set(participant_ids))),
            _usage.c.usage_key.in_(list(set(keys))),
        )
    )
    return {(p, k): (g, pts) for p, k, g, pts in rows}


async def add_usage(session: AsyncSession, deltas: dict[tuple[uuid.UUID, str], list[int]]) -> None:
    rows = [
        {"participant_id": p, "usage_key": k, "grams": g, "points": pts}
        for (p, k), (g, pts) in sorted(
            deltas.items(), key=lambda item: (str(item[0][0]), item[0][1])
        )
        if g or pts
    ]
    if not rows:
        return
    statement = insert(_usage)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["participant_id", "usage_key"],
            set_={
                "grams": _usage.c.grams + statement.excluded.grams,
                "points": _usage.c.points + statement.excluded.points,
            },
        ),
        rows,
    )


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


async def insert_credits(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        connection = await session.connection()
        await connection.execute(_credits.insert(), list(rows))


async def credit_of_event(session: AsyncSession, event_id: int) -> Any:
    return (await session.execute(select(_credits).where(_credits.c.event_id == event_id))).first()


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
