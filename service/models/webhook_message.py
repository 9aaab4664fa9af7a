from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class WebhookMessage(Base):
    """The transactional outbox: one row per (event, endpoint), written in the business
    transaction, so rolled-back work sends nothing and committed work is never dropped.

    `id` is the `webhook-id` header, the same on every attempt and replay: receivers dedupe by
    it. A worker claims a message by setting `lease_id` and `leased_until` in a short committed
    transaction, sends without holding any transaction, then records the result only if its
    lease is still the current one. A worker that dies leaves a lease that simply expires.
    """

    __tablename__ = "webhook_messages"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'dead')", name="status_known"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        CheckConstraint(
            "(status = 'delivered') = (delivered_at IS NOT NULL)", name="delivered_at_iff_delivered"
        ),
        # What the workers poll: due pending messages, oldest first.
        Index(
            "ix_webhook_messages_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_webhook_messages_dead",
            "created_at",
            postgresql_where=text("status = 'dead'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id"), nullable=False, index=True
    )
    event_type: Mapped[str] = mapped_column(String(64), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
    lease_id: Mapped[uuid.UUID | None] = mapped_column()
    leased_until: Mapped[datetime | None] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(String(200))
