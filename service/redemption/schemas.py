"""The shapes of a redemption: what a till sends and gets, and the offer catalogue."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.fields import plain_text


class AuthoriseIn(BaseModel):
    """Exchange the customer's redemption code for a hold on their points."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"redemption_token": "rt_Q2x...", "offer_id": "5c1e...", "points": None}]
        },
    )

    redemption_token: str = plain_text(64, min_length=10)
    offer_id: uuid.UUID | None = None
    points: int | None = Field(default=None, ge=1, le=10_000_000)

    @model_validator(mode="after")
    def _one_of(self) -> AuthoriseIn:
        if (self.offer_id is None) == (self.points is None):
            raise ValueError("give an offer_id or a points amount, not both")
        return self


class CaptureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: int | None = Field(default=None, ge=1, le=10_000_000, description="default: all")


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: int = Field(ge=1, le=10_000_000)


RedemptionStatus = Literal[
    "authorised", "captured", "partially_refunded", "refunded", "voided", "expired"
]


class RedemptionOut(BaseModel):
    id: uuid.UUID
    status: RedemptionStatus
    offer_id: uuid.UUID | None
    points_authorised: int
    points_captured: int
    points_refunded: int
    hold_expires_at: datetime
    created_at: datetime


class OfferOut(BaseModel):
    id: uuid.UUID
    merchant_code: str
    merchant_name: str
    title: str
    points_price: int
    face_value_fen: int
    stock_left: int | None
    per_user_limit: int | None
    region: str | None
    valid_from: datetime
    valid_to: datetime


class OfferPage(BaseModel):
    items: list[OfferOut]
    next_cursor: str | None
