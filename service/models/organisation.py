from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, CreatedAtMixin


class Organisation(CreatedAtMixin, Base):
    """A small business. Its id is its participant id: its own points account."""

    __tablename__ = "organisations"

    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
