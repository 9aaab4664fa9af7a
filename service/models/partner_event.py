from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Sequence,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base

OUTCOME_SEQUENCE = Sequence("partner_event_outcome_seq")


class PartnerEvent(Base):
    """One action reported by a partner, identified by (partner, external id), and its outcome.

    The report itself (content hash, times, subject hash, quantities) never changes; the
    outcome columns move forward (received -> pending -> credited ... -> retracted), each
    change stamped with a new `outcome_seq` so partners can reconcile from a cursor.
    """

    __tablename__ = "partner_events"
    __table_args__ = (
        UniqueConstraint("partner_id", "external_id"),
        CheckConstraint(
            "status IN ('received', 'pending', 'credited', 'capped', 'ineligible', "
            "'implausible', 'expired', 'duplicate', 'retracted')",
            name="status_known",
        ),
        Index("ix_partner_events_outcome_cursor", "partner_id", "outcome_seq"),
        # Partners' health reads a window of events by arrival: a block-range index.
        Index("ix_partner_events_received_at_brin", "received_at", postgresql_using="brin"),
        Index(
            "ix_partner_events_pending_subject",
            "partner_id",
            "subject_hash",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"), nullable=False)
    external_id: Mapped[str] = mapped_column(String(128), nullable=False)
    content_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    action_type: Mapped[str] = mapped_column(String(64), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(nullable=False)
    received_at: Mapped[datetime] = mapped_column(nullable=False)
    subject_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    region: Mapped[str | None] = mapped_column(String(16))
    quantities: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    place_ids: Mapped[list[str] | None] = mapped_column(JSONB)

    status: Mapped[str] = mapped_column(String(16), nullable=False)
    outcome_seq: Mapped[int] = mapped_column(
        BigInteger, OUTCOME_SEQUENCE, server_default=OUTCOME_SEQUENCE.next_value(), nullable=False
    )
    participant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("participants.id"))
    methodology_id: Mapped[str | None] = mapped_column(String(80))
    methodology_version: Mapped[int | None] = mapped_column(Integer)
    grams: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    points: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    reasons: Mapped[list[dict[str, str]]] = mapped_column(JSONB, nullable=False)
    duplicate_of: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("partner_events.id"))
    credit_transaction_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("ledger_transactions.id")
    )
