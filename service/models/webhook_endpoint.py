from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ARRAY, CheckConstraint, Index, LargeBinary, String, func
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class WebhookEndpoint(Base):
    """Where a merchant or partner wants its events POSTed, and which events.

    The signing secret is never stored: it is derived on demand from the server's partner key,
    the endpoint id and `salt` (see service.webhooks.secrets). Rotating the secret replaces the
    salt and keeps the old one until `previous_salt_expires_at`, while deliveries carry both
    signatures, so a receiver can switch secrets without missing a message.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        CheckConstraint("owner_type IN ('merchant', 'partner')", name="owner_type_known"),
        CheckConstraint("url ~ '^https?://'", name="url_http"),
        CheckConstraint("cardinality(event_types) > 0", name="event_types_not_empty"),
        CheckConstraint(
            "(previous_salt IS NULL) = (previous_salt_expires_at IS NULL)",
            name="previous_salt_expiry",
        ),
        Index("ix_webhook_endpoints_owner", "owner_type", "owner_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_type: Mapped[str] = mapped_column(String(16), nullable=False)
    owner_id: Mapped[uuid.UUID] = mapped_column(nullable=False)
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(64)), nullable=False)
    salt: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    previous_salt: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_salt_expires_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
    disabled_at: Mapped[datetime | None] = mapped_column()
