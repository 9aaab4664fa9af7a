"""A credit whose grams a pooling transaction moved into a pool account (append-only).

The ledger's own record of where a credit's grams are: a reversal of a pooled credit takes
its grams back from the pool account, not from the participant. The primary key is the
credit's transaction: a credit's grams are pooled at most once.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class LedgerPooledCredit(Base):
    __tablename__ = "ledger_pooled_credits"
    __table_args__ = (
        CheckConstraint("grams > 0", name="grams_positive"),
        Index(None, "pooling_transaction_id"),
        Index(None, "pool_account_id"),
    )

    credit_transaction_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_transactions.id"), primary_key=True
    )
    pooling_transaction_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_transactions.id"), nullable=False
    )
    pool_account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_accounts.id"), nullable=False
    )
    grams: Mapped[int] = mapped_column(BigInteger, nullable=False)
