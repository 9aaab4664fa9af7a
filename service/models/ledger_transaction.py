"""An immutable ledger transaction; its postings sum to zero per asset (trigger)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Identity,
    Index,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class LedgerTransaction(Base):
    __tablename__ = "ledger_transactions"
    __table_args__ = (
        UniqueConstraint("origin", "idempotency_key"),
        CheckConstraint(
            "kind IN ('credit', 'reversal', 'redemption', 'refund', 'expiry', 'debt_payment',"
            " 'pooling')",
            name="kind_known",
        ),
        CheckConstraint("length(idempotency_key) BETWEEN 1 AND 200", name="key_length"),
        # A credit is reversed at most once, whatever idempotency key the reversal uses.
        Index(
            "uq_ledger_transactions_one_reversal_per_credit",
            text("(request ->> 'reverses')"),
            unique=True,
            postgresql_where=text("kind = 'reversal'"),
        ),
        # Reports read a period of transactions; rows arrive in time order, so a block-range
        # index finds them for a few pages and next to no cost per insert.
        Index("ix_ledger_transactions_created_at_brin", "created_at", postgresql_using="brin"),
        Index(
            "ix_ledger_transactions_refund_of",
            text("(request ->> 'refund_of')"),
            postgresql_where=text("kind = 'refund'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    origin: Mapped[str] = mapped_column(String(80), nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    # The canonical request: same key with different content is a conflict naming the fields.
    request: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        server_default=func.clock_timestamp(), nullable=False
    )
