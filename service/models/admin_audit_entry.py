from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Identity, LargeBinary, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class AdminAuditEntry(Base):
    """One administrative act. Append-only (triggers) and hash-chained (`service.audit.chain`):
    each row's `hash` covers its content and the previous row's hash."""

    __tablename__ = "admin_audit_log"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(nullable=False)
    admin_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("admins.id"))
    actor: Mapped[str] = mapped_column(String(120), nullable=False)
    role: Mapped[str] = mapped_column(String(32), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target_type: Mapped[str] = mapped_column(String(32), nullable=False)
    target_id: Mapped[str] = mapped_column(String(200), nullable=False)
    before_digest: Mapped[bytes | None] = mapped_column(LargeBinary)
    after_digest: Mapped[bytes | None] = mapped_column(LargeBinary)
    request_id: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, unique=True)
