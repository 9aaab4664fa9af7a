"""All SQL on the review tables (`review_rules`, `review_flags`); nobody else imports it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import any_, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import json_text
from service.models import ReviewFlag, ReviewRule

_INSERT_FLAGS = text(
    """
    INSERT INTO review_flags (event_id, participant_id, partner_id, action_type, occurred_at,
        flagged_at, rules, details, points, grams, transaction_id, status)
    SELECT event_id, participant_id, partner_id, action_type, occurred_at, flagged_at,
        ARRAY(SELECT jsonb_array_elements_text(rules)), details, points, grams,
        transaction_id, 'open'
    FROM json_to_recordset(CAST(:flags AS json))
         AS f(event_id bigint, participant_id uuid, partner_id uuid, action_type text,
              occurred_at timestamptz, flagged_at timestamptz, rules jsonb, details jsonb,
              points bigint, grams bigint, transaction_id bigint)
    ORDER BY event_id
    ON CONFLICT (event_id) DO NOTHING
    """
)


@dataclass(frozen=True, slots=True)
class QueueFilter:
    status: str | None = None
    rule: str | None = None
    partner_id: uuid.UUID | None = None
    assignee: uuid.UUID | None = None
    unassigned: bool = False
    participant_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(slots=True)
class ReviewRepository:
    session: AsyncSession

    @classmethod
    def from_session(cls, session: AsyncSession) -> ReviewRepository:
        return cls(session)

    # --- rules ---------------------------------------------------------------------------

    async def rule_rows(self) -> list[ReviewRule]:
        rows = await self.session.scalars(select(ReviewRule).order_by(ReviewRule.rule))
        return list(rows)

    async def lock_rule(self, rule: str) -> ReviewRule | None:
        return await self.session.scalar(
            select(ReviewRule).where(ReviewRule.rule == rule).with_for_update()
        )

    async def save_rule(
        self, rule: str, enabled: bool, params: dict[str, Any], admin_id: uuid.UUID, now: datetime
    ) -> ReviewRule:
        statement = (
            insert(ReviewRule)
            .values(rule=rule, enabled=enabled, params=params, updated_by=admin_id, updated_at=now)
            .on_conflict_do_update(
                index_elements=[ReviewRule.rule],
                set_={
                    "enabled": enabled,
                    "params": params,
                    "updated_by": admin_id,
                    "updated_at": now,
                },
            )
            .returning(ReviewRule)
            .execution_options(populate_existing=True)
        )
        saved = await self.session.scalar(statement)
        assert saved is not None
        return saved

    # --- flags -----------------------------------------------------------------------------

    async def insert_flags(self, rows: Sequence[dict[str, Any]]) -> None:
        """Every flag of a crediting transaction, in one statement."""
        if rows:
            await self.session.execute(_INSERT_FLAGS, {"flags": json_text(list(rows))})

    async def get(self, event_id: int) -> ReviewFlag | None:
        return await self.session.get(ReviewFlag, event_id)

    async def lock(self, event_id: int) -> ReviewFlag | None:
        """The flag, locked until commit: two reviewers deciding at once queue here."""
        return await self.session.scalar(
            select(ReviewFlag)
            .where(ReviewFlag.event_id == event_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )

    async def page(self, where: QueueFilter, *, before: int | None, limit: int) -> list[ReviewFlag]:
        """Newest first (by event id), keyset: the page after `before`."""
        query = select(ReviewFlag)
        if where.status is not None:
            query = query.where(ReviewFlag.status == where.status)
        if where.rule is not None:
            query = query.where(literal(where.rule) == any_(ReviewFlag.rules))
        if where.partner_id is not None:
            query = query.where(ReviewFlag.partner_id == where.partner_id)
        if where.participant_id is not None:
            query = query.where(ReviewFlag.participant_id == where.participant_id)
        if where.assignee is not None:
            query = query.where(ReviewFlag.assignee == where.assignee)
        if where.unassigned:
            query = query.where(ReviewFlag.assignee.is_(None))
        if where.since is not None:
            query = query.where(ReviewFlag.flagged_at >= where.since)
        if where.until is not None:
            query = query.where(ReviewFlag.flagged_at < where.until)
        if before is not None:
            query = query.where(ReviewFlag.event_id < before)
        query = query.order_by(ReviewFlag.event_id.desc()).limit(limit)
        return list(await self.session.scalars(query))

    async def assign(self, event_id: int, assignee: uuid.UUID | None, now: datetime) -> None:
        await self.session.execute(
            update(ReviewFlag)
            .where(ReviewFlag.event_id == event_id)
            .values(assignee=assignee, assigned_at=now if assignee is not None else None)
        )

    async def decide(
        self,
        event_id: int,
        *,
        status: str,
        admin_id: uuid.UUID,
        now: datetime,
        reason: str | None,
        note: str | None,
    ) -> None:
        await self.session.execute(
            update(ReviewFlag)
            .where(ReviewFlag.event_id == event_id, ReviewFlag.status == "open")
            .values(status=status, decided_by=admin_id, decided_at=now, reason=reason, note=note)
        )

    async def statuses(self, event_ids: Sequence[int]) -> dict[int, ReviewFlag]:
        if not event_ids:
            return {}
        rows = await self.session.scalars(
            select(ReviewFlag).where(ReviewFlag.event_id.in_(list(event_ids)))
        )
        return {row.event_id: row for row in rows}

    async def open_for_participant(self, participant_id: uuid.UUID) -> list[int]:
        rows = await self.session.scalars(
            select(ReviewFlag.event_id)
            .where(ReviewFlag.participant_id == participant_id, ReviewFlag.status == "open")
            .order_by(ReviewFlag.event_id)
        )
        return list(rows)

    async def of_participant(self, participant_id: uuid.UUID) -> list[ReviewFlag]:
        rows = await self.session.scalars(
            select(ReviewFlag)
            .where(ReviewFlag.participant_id == participant_id)
            .order_by(ReviewFlag.event_id)
        )
        return list(rows)

    async def clear_notes(self, participant_id: uuid.UUID) -> None:
        await self.session.execute(
            update(ReviewFlag)
            .where(ReviewFlag.participant_id == participant_id, ReviewFlag.note.is_not(None))
            .values(note=None)
        )


def credit_not_under_review_sql(event_id_column: str) -> str:
    """A SQL condition: the credit whose event id is `event_id_column` has no open flag (its
    points are held until a reviewer decides). Pooling embeds it in its eligibility rule, as
    other domains embed the ledger's conditions; `event_id_column` is a constant column name,
    never a value."""
    return (
        "NOT EXISTS (SELECT 1 FROM review_flags AS rf"  # noqa: S608 (a constant column name)
        f" WHERE rf.event_id = {event_id_column} AND rf.status = 'open')"
    )
