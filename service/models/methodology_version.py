from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class MethodologyVersion(Base):
    """A methodology document as filed. Immutable except for closing its effective period."""

    __tablename__ = "methodology_versions"

    methodology_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    action_type: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    region: Mapped[str | None] = mapped_column(String(16))
    effective_from: Mapped[datetime] = mapped_column(nullable=False)
    effective_to: Mapped[datetime | None] = mapped_column()
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    source_yaml: Mapped[str] = mapped_column(Text, nullable=False)
    filed_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
