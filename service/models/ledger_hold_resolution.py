"""How a hold ended: posted, voided or expired; at most one per hold."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class LedgerHoldResolution(Base):
    """At most one per hold (its primary key): a hold resolves exactly once."""

    __tablename__ = "ledger_hold_resolutions"
    __table_args__ = (
        UniqueConstraint("origin", "idempotency_key"),
        CheckConstraint("outcome IN ('posted', 'voided', 'expired')", name="outcome_known"),
        CheckConstraint("amount_posted >= 0", name="amount_posted_non_negative"),
        CheckConstraint(
            "(outcome = 'posted') = (transaction_id IS NOT NULL AND amount_posted > 0)",
            name="posted_has_transaction",
        ),
    )

    hold_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_holds.id"), primary_key=True
    )
    outcome: Mapped[str] = mapped_column(String(8), nullable=False)
    amount_posted: Mapped[int] = mapped_column(BigInteger, nullable=False)
    transaction_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("ledger_transactions.id")
    )
    origin: Mapped[str] = mapped_column(String(80), nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(200), nullable=False)
    request: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        server_default=func.clock_timestamp(), nullable=False
    )
