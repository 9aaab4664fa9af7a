from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, CreatedAtMixin


class ParticipantKind(enum.StrEnum):
    CITIZEN = "citizen"
    BUSINESS = "business"


class Participant(CreatedAtMixin, Base):
    """A citizen or small business that earns points. Personal data live elsewhere."""

    __tablename__ = "participants"
    __table_args__ = (CheckConstraint("kind IN ('citizen', 'business')", name="kind_known"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    display_name: Mapped[str] = mapped_column(String(120), nullable=False)
    region: Mapped[str | None] = mapped_column(String(16))
    # Set when the person deletes their account: the row stays as a pseudonym so the
    # ledger remains whole, and display_name is overwritten.
    erased_at: Mapped[datetime | None] = mapped_column()
