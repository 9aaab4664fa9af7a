from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, func
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class RedemptionToken(Base):
    """A short-lived, single-use token the app shows as a QR code at a till.

    Only its SHA-256 is stored; `used_at` is set once, by the merchant's authorisation.
    """

    __tablename__ = "redemption_tokens"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id"), nullable=False, index=True
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(nullable=False)
    used_at: Mapped[datetime | None] = mapped_column()
