from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, LargeBinary, func, text
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class IdentityLink(Base):
    """A participant's consent that a partner identity (card, account) is theirs.

    Only a keyed hash of the partner's subject reference is kept, never the number.
    """

    __tablename__ = "identity_links"
    __table_args__ = (
        Index(
            "uq_identity_links_active_subject",
            "partner_id",
            "subject_hash",
            unique=True,
            postgresql_where=text("unlinked_at IS NULL"),
        ),
        Index(None, "participant_id"),
        # Every link of a subject, unlinked ones too: the identity-churn flag rule counts them.
        Index("ix_identity_links_subject_history", "partner_id", "subject_hash"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    participant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), nullable=False)
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"), nullable=False)
    subject_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    linked_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
    unlinked_at: Mapped[datetime | None] = mapped_column()
