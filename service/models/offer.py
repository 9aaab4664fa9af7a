from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class Offer(Base):
    """Something a merchant gives for points: price, face value, stock, window, limit."""

    __tablename__ = "offers"
    __table_args__ = (
        CheckConstraint("points_price > 0", name="price_positive"),
        CheckConstraint("face_value_fen >= 0", name="face_value_non_negative"),
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock_non_negative"),
        CheckConstraint("per_user_limit IS NULL OR per_user_limit > 0", name="limit_positive"),
        CheckConstraint("valid_to > valid_from", name="window_ordered"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("merchants.id"), nullable=False, index=True
    )
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    points_price: Mapped[int] = mapped_column(BigInteger, nullable=False)
    face_value_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # Remaining stock; NULL means unlimited. Taken at authorisation, given back on void.
    stock: Mapped[int | None] = mapped_column(BigInteger)
    per_user_limit: Mapped[int | None] = mapped_column(Integer)
    region: Mapped[str | None] = mapped_column(String(16))
    valid_from: Mapped[datetime] = mapped_column(nullable=False)
    valid_to: Mapped[datetime] = mapped_column(nullable=False)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
