from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class OrganisationMember(Base):
    """A user's role in an organisation: `owner` (manages members) or `member`."""

    __tablename__ = "organisation_members"
    __table_args__ = (CheckConstraint("role IN ('owner', 'member')", name="role_known"),)

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.participant_id"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    added_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
