"""Ledger tables (see service/ledger for the rules they obey).

Facts are append-only: transactions, postings, lot movements, holds and hold
resolutions can be inserted, never updated or deleted (database triggers). Two
kinds of row are materialised state kept in step with the facts in the same
database transaction: an account's balances and chain head, and a lot's
remainder; triggers let only those columns change. Debt (points a reversal
could not claw back) is its own asset, `DEBT`, so it is posted and chained like
everything else. `carbon-points ledger verify` recomputes both from
the facts.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base

ZERO_HASH = b"\x00" * 32


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("owner_type IN ('participant', 'merchant', 'program')", name="owner"),
        CheckConstraint("asset IN ('POINTS', 'GCO2E', 'DEBT')", name="asset"),
        CheckConstraint(
            "kind IN ('participant', 'issuance', 'settlement', 'expiry')", name="kind_known"
        ),
        CheckConstraint("held >= 0", name="held_non_negative"),
        # Invariant 2, enforced where the data lives: available = posted - held >= 0.
        CheckConstraint("NOT bounded OR posted - held >= 0", name="available_non_negative"),
        CheckConstraint("chain_seq >= 0", name="chain_seq_non_negative"),
        CheckConstraint("octet_length(chain_hash) = 32", name="chain_hash_length"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(120), unique=True, nullable=False)
    owner_type: Mapped[str] = mapped_column(String(16), nullable=False)
    owner_id: Mapped[uuid.UUID | None] = mapped_column()
    asset: Mapped[str] = mapped_column(String(8), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    bounded: Mapped[bool] = mapped_column(Boolean, nullable=False)
    posted: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    held: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    chain_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    chain_hash: Mapped[bytes] = mapped_column(
        LargeBinary, nullable=False, server_default=text("'\\x" + "00" * 32 + "'::bytea")
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)


class LedgerTransaction(Base):
    __tablename__ = "ledger_transactions"
    __table_args__ = (
        UniqueConstraint("origin", "idempotency_key"),
        CheckConstraint(
            "kind IN ('credit', 'reversal', 'redemption', 'refund', 'expiry', 'debt_payment')",
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


class LedgerPosting(Base):
    __tablename__ = "ledger_postings"
    __table_args__ = (
        UniqueConstraint("account_id", "account_seq"),
        CheckConstraint("amount <> 0", name="amount_non_zero"),
        Index(None, "transaction_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    transaction_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_transactions.id"), nullable=False
    )
    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_accounts.id"), nullable=False
    )
    asset: Mapped[str] = mapped_column(String(8), nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    account_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    chain_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class LedgerLot(Base):
    __tablename__ = "ledger_lots"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_in_range"),
        Index(
            "ix_ledger_lots_open_by_account",
            "account_id",
            "expires_at",
            "id",
            postgresql_where=text("remaining > 0"),
        ),
        Index(
            "ix_ledger_lots_open_by_expiry", "expires_at", postgresql_where=text("remaining > 0")
        ),
        Index(None, "transaction_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_accounts.id"), nullable=False
    )
    transaction_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_transactions.id"), nullable=False
    )
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    remaining: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(nullable=False)


class LedgerHold(Base):
    __tablename__ = "ledger_holds"
    __table_args__ = (
        UniqueConstraint("origin", "idempotency_key"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index(None, "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    origin: Mapped[str] = mapped_column(String(80), nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(200), nullable=False)
    request: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_accounts.id"), nullable=False
    )
    counter_account_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_accounts.id"), nullable=False
    )
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        server_default=func.clock_timestamp(), nullable=False
    )


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
