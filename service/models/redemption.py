from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, func
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class Redemption(Base):
    """A redemption's facts; its state (authorised, captured, voided, refunded) is read from
    the ledger's hold and transactions, so the two can never disagree. Append-only."""

    __tablename__ = "redemptions"
    __table_args__ = (
        Index("ix_redemptions_offer_participant", "offer_id", "participant_id"),
        Index("ix_redemptions_merchant_created", "merchant_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), nullable=False)
    terminal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchant_terminals.id"))
    participant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), nullable=False)
    offer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("offers.id"))
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
    hold_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("ledger_holds.id"), nullable=False, unique=True
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
