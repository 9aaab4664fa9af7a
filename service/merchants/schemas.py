"""The merchant API's own shapes: the settlement statement."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class StatementLine(BaseModel):
    at: datetime
    kind: Literal["redemption", "refund"]
    transaction_id: int
    points: int


class StatementOut(BaseModel):
    merchant_code: str
    period_start: datetime
    period_end: datetime
    redemptions: int
    points_redeemed: int
    refunds: int
    points_refunded: int
    net_points: int
    fen_per_point: int
    value_fen: int
    lines: list[StatementLine]
