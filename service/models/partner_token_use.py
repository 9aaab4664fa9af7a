from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class PartnerTokenUse(Base):
    """A partner-signed identity-link token, accepted once (its id, per partner)."""

    __tablename__ = "partner_token_uses"

    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"), primary_key=True)
    token_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    participant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), nullable=False)
    used_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
