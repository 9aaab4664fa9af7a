"""Every change to a lot's remainder and what caused it (append-only)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class LedgerLotMovement(Base):
    """Every change to a lot's remainder, with the transaction or hold that made it."""

    __tablename__ = "ledger_lot_movements"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_non_zero"),
        CheckConstraint(
            "kind IN ('open', 'hold', 'release', 'refund', 'expire', 'reverse', 'debt')",
            name="kind_known",
        ),
        CheckConstraint("transaction_id IS NOT NULL OR hold_id IS NOT NULL", name="has_cause"),
        Index(None, "lot_id"),
        Index(None, "transaction_id"),
        Index(None, "hold_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    lot_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_lots.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    transaction_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("ledger_transactions.id")
    )
    hold_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_holds.id"))
