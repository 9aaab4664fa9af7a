from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ARRAY, CheckConstraint, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class Partner(Base):
    """An organisation that pushes verified actions: a metro card system, a utility, ..."""

    __tablename__ = "partners"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('transit', 'bikeshare', 'maas', 'utility', 'retail', 'waste')",
            name="kind_known",
        ),
        CheckConstraint("status IN ('active', 'suspended')", name="status_known"),
        CheckConstraint("rate_limit_per_second > 0", name="rate_limit_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    code: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    allowed_action_types: Mapped[list[str]] = mapped_column(ARRAY(String(64)), nullable=False)
    region: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="active")
    rate_limit_per_second: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default="2000"
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
