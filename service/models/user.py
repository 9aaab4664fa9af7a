from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, CreatedAtMixin


class User(CreatedAtMixin, Base):
    """Someone who signs in to the app. A citizen's points account is their participant.

    The login name (a phone number or an email address) is never stored: only its keyed
    hash (HMAC-SHA256 with the identifier pepper), enough to find the user at login.
    """

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(
            "erased_at IS NOT NULL OR (login_hash IS NOT NULL AND password_hash IS NOT NULL)",
            name="credentials_until_erased",
        ),
        CheckConstraint("token_generation >= 0", name="token_generation_non_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id"), nullable=False, unique=True
    )
    # Cleared when the account is erased, so the login name can be registered again.
    login_hash: Mapped[bytes | None] = mapped_column(LargeBinary, unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    # Every access token carries the generation it was issued under; logging out
    # everywhere increments it, so every earlier access token stops working at once.
    token_generation: Mapped[int] = mapped_column(Integer, server_default="0", nullable=False)
    erased_at: Mapped[datetime | None] = mapped_column()
