from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ARRAY, ForeignKey, LargeBinary, String, func
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class MerchantApiKey(Base):
    """A scoped bearer key (`cpmk_<key id>_<secret>`); only the secret's SHA-256 is kept."""

    __tablename__ = "merchant_api_keys"

    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("merchants.id"), nullable=False, index=True
    )
    terminal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchant_terminals.id"))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(32)), nullable=False)
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column()
