"""One posting of a transaction to an account, linked into the account's hash chain."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class LedgerPosting(Base):
    __tablename__ = "ledger_postings"
    __table_args__ = (
        UniqueConstraint("account_id", "account_seq"),
        # A posting's asset is its account's: no POINTS posting labelled GCO2E.
        ForeignKeyConstraint(
            ["account_id", "asset"], ["ledger_accounts.id", "ledger_accounts.asset"]
        ),
        CheckConstraint("amount <> 0", name="amount_non_zero"),
        Index(None, "transaction_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    transaction_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_transactions.id"), nullable=False
    )
    account_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    asset: Mapped[str] = mapped_column(String(8), nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    account_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    chain_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
