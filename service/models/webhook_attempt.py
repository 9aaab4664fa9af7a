from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Identity, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class WebhookAttempt(Base):
    """One HTTP attempt to deliver a message: the audit trail behind its status.

    Attempt numbers restart after an administrator's replay, so the key is a sequence.
    Either `status_code` (the receiver answered) or `error` (a transport failure's class) is set.
    """

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    message_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_messages.id"), nullable=False, index=True
    )
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    attempted_at: Mapped[datetime] = mapped_column(nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(200))
    duration_ms: Mapped[int] = mapped_column(Integer, nullable=False)
