"""The review queue's tables: flag rules (thresholds administrators edit) and flagged credits."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, BigInteger, Boolean, CheckConstraint, Index, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base

REVIEW_STATUSES = ("open", "approved", "rejected")


class ReviewRule(Base):
    """One flag rule: on or off, and its thresholds (validated by `service.review.rules`)."""

    __tablename__ = "review_rules"

    rule: Mapped[str] = mapped_column(String(32), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
    updated_by: Mapped[uuid.UUID | None] = mapped_column()


class ReviewFlag(Base):
    """A credit flagged as it was credited, and what became of it.

    One row per flagged credit (keyed by its event id, which is the credit's id). `status` is
    `open` while the points are held; a reviewer's decision sets it once (`approved`,
    `rejected`) with who decided, when and why.
    """

    __tablename__ = "review_flags"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'approved', 'rejected')", name="status_known"),
        CheckConstraint("cardinality(rules) >= 1", name="has_rules"),
        CheckConstraint("(status = 'open') = (decided_at IS NULL)", name="decided_iff_not_open"),
        CheckConstraint("status <> 'rejected' OR reason IS NOT NULL", name="rejection_has_reason"),
        # The queue: newest first per status, and the participant's open flags (pooling).
        Index("ix_review_flags_status_event", "status", "event_id"),
        Index("ix_review_flags_participant", "participant_id", "status"),
        Index("ix_review_flags_partner", "partner_id", "event_id"),
        Index("ix_review_flags_flagged_at_brin", "flagged_at", postgresql_using="brin"),
    )

    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    participant_id: Mapped[uuid.UUID] = mapped_column(nullable=False)
    partner_id: Mapped[uuid.UUID] = mapped_column(nullable=False)
    action_type: Mapped[str] = mapped_column(String(64), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(nullable=False)
    flagged_at: Mapped[datetime] = mapped_column(nullable=False)
    rules: Mapped[list[str]] = mapped_column(ARRAY(String(32)), nullable=False)
    details: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
    grams: Mapped[int] = mapped_column(BigInteger, nullable=False)
    transaction_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="open")
    assignee: Mapped[uuid.UUID | None] = mapped_column()
    assigned_at: Mapped[datetime | None] = mapped_column()
    decided_by: Mapped[uuid.UUID | None] = mapped_column()
    decided_at: Mapped[datetime | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
