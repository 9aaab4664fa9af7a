from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class CapUsage(Base):
    """What a participant has been credited in one cap period (`cap key @ period label`).

    Changed only under the participant's crediting lock, so concurrent batches cannot
    both see room under a cap and both use it.
    """

    __tablename__ = "cap_usage"
    __table_args__ = (CheckConstraint("grams >= 0 AND points >= 0", name="non_negative"),)

    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id"), primary_key=True
    )
    usage_key: Mapped[str] = mapped_column(String(120), primary_key=True)
    grams: Mapped[int] = mapped_column(BigInteger, nullable=False)
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
