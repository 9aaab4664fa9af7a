from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class Credit(Base):
    """Invariant 5: the outcome of one event under one methodology version, never changed.

    Methodology id and version and the normalised inputs are stored, so the explanation can
    be regenerated, and recomputing gives the same numbers. Append-only (trigger).
    """

    __tablename__ = "credits"
    __table_args__ = (
        # Cross-partner de-duplication looks for the same person and action near in time.
        Index("ix_credits_dedup", "participant_id", "action_type", "occurred_at"),
        # Reports read a period of credits (by when the action occurred): a block-range index,
        # a few pages that cost the crediting path nearly nothing to keep.
        Index("ix_credits_occurred_at_brin", "occurred_at", postgresql_using="brin"),
    )

    event_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("partner_events.id"), primary_key=True
    )
    participant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), nullable=False)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"), nullable=False)
    action_type: Mapped[str] = mapped_column(String(64), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(nullable=False)
    received_at: Mapped[datetime] = mapped_column(nullable=False)
    region: Mapped[str | None] = mapped_column(String(16))
    methodology_id: Mapped[str] = mapped_column(String(80), nullable=False)
    methodology_version: Mapped[int] = mapped_column(Integer, nullable=False)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    usage_before: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    grams: Mapped[int] = mapped_column(BigInteger, nullable=False)
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
    transaction_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("ledger_transactions.id")
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
