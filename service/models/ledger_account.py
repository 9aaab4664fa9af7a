"""A ledger account per owner and asset: balances and its hash-chain head (materialised)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Identity,
    LargeBinary,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("owner_type IN ('participant', 'merchant', 'program')", name="owner"),
        CheckConstraint("asset IN ('POINTS', 'GCO2E', 'DEBT')", name="asset"),
        CheckConstraint(
            "kind IN ('participant', 'issuance', 'settlement', 'expiry', 'pool')", name="kind_known"
        ),
        CheckConstraint("held >= 0", name="held_non_negative"),
        # Invariant 2, enforced where the data lives: available = posted - held >= 0.
        CheckConstraint("NOT bounded OR posted - held >= 0", name="available_non_negative"),
        CheckConstraint("chain_seq >= 0", name="chain_seq_non_negative"),
        CheckConstraint("octet_length(chain_hash) = 32", name="chain_hash_length"),
        CheckConstraint("kind <> 'participant' OR bounded", name="participant_bounded"),
        # The target of the postings' (account_id, asset) foreign key.
        UniqueConstraint("id", "asset"),
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
