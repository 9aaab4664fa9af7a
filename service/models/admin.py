from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ARRAY, BigInteger, CheckConstraint, Integer, LargeBinary, String, func
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base

ADMIN_ROLES = (
    "program-admin",
    "methodology-author",
    "methodology-approver",
    "reviewer",
    "auditor",
)


class Admin(Base):
    """An administrator: separate from citizens (own table, own token audience).

    The TOTP secret is never stored: it is derived when needed from the server's partner key
    and `totp_salt` (like partner credentials); `totp_last_step` refuses a code used twice.
    """

    __tablename__ = "admins"
    __table_args__ = (
        CheckConstraint(
            "cardinality(roles) >= 1 AND roles <@ ARRAY['program-admin', 'methodology-author',"
            " 'methodology-approver', 'reviewer', 'auditor']::varchar[]",
            name="roles_known",
        ),
        CheckConstraint("status IN ('active', 'disabled')", name="status_known"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    login: Mapped[str] = mapped_column(String(120), unique=True, nullable=False)
    display_name: Mapped[str] = mapped_column(String(120), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    roles: Mapped[list[str]] = mapped_column(ARRAY(String(32)), nullable=False)
    totp_salt: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    totp_last_step: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    token_generation: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="active")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
