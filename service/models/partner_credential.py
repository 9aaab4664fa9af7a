from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, func
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class PartnerCredential(Base):
    """A signing key. The secret itself is never stored: it is derived on demand from the
    server's partner key, the key id and this row's salt (see service.partners.signing)."""

    __tablename__ = "partner_credentials"

    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    partner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("partners.id"), nullable=False, index=True
    )
    salt: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
    # Set on rotation: the old key keeps working until then (the overlap period).
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
