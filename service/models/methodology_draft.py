from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class MethodologyDraft(Base):
    """A methodology version on its way to being filed: uploaded, approved by someone other
    than its author (four eyes), then scheduled, which files it in `methodology_versions`.

    Its YAML never changes (a trigger refuses it); approval is set once; a schedule is set
    once and may be withdrawn only before its instant (`lifecycle.unschedule`).
    """

    __tablename__ = "methodology_drafts"
    __table_args__ = (
        UniqueConstraint("methodology_id", "version"),
        CheckConstraint("approved_by IS NULL OR approved_by <> author_id", name="four_eyes"),
        CheckConstraint(
            "activate_at IS NULL OR approved_at IS NOT NULL", name="approved_before_scheduled"
        ),
        CheckConstraint(
            "(closes_methodology_id IS NULL) = (closes_version IS NULL) "
            "AND (activate_at IS NOT NULL OR closes_methodology_id IS NULL)",
            name="closes_only_when_scheduled",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    methodology_id: Mapped[str] = mapped_column(String(80), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    action_type: Mapped[str] = mapped_column(String(64), nullable=False)
    region: Mapped[str | None] = mapped_column(String(16))
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    source_yaml: Mapped[str] = mapped_column(Text, nullable=False)
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("admins.id"), nullable=False)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
    approved_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("admins.id"))
    approved_at: Mapped[datetime | None] = mapped_column()
    activate_at: Mapped[datetime | None] = mapped_column()
    # The version whose open period the schedule closed at `activate_at` (none: NULL), so an
    # undone schedule reopens exactly that one.
    closes_methodology_id: Mapped[str | None] = mapped_column(String(80))
    closes_version: Mapped[int | None] = mapped_column(Integer)
