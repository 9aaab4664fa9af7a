"""What the app reads: balances, history, reductions, explanations, leaderboards."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ExpiringPoints(BaseModel):
    expires_at: datetime
    points: int


class BalanceOut(BaseModel):
    available: int
    on_hold: int
    debt: int
    pending_events: int
    grams_co2e: int
    expiring: list[ExpiringPoints]


class ReductionRow(BaseModel):
    month: str
    action_type: str
    grams: int
    points: int
    credits: int


class ReductionPage(BaseModel):
    items: list[ReductionRow]
    next_cursor: str | None


class HistoryItem(BaseModel):
    sequence: int
    kind: str
    points: int
    at: datetime
    credit_id: str | None = None
    methodology_id: str | None = None
    methodology_version: int | None = None
    reason: str | None = None
    reverses_credit_id: str | None = Field(
        default=None,
        description="On a reversal: the `credit_id` of the credit it takes back (its own"
        " history item, and its explanation). Null on every other kind.",
    )
    # `reason` as a sentence in the reader's language (Content-Language).
    reason_text: str | None = None


class HistoryPage(BaseModel):
    items: list[HistoryItem]
    next_cursor: str | None


class LeaderboardEntry(BaseModel):
    rank: int
    # Kept to mark the caller's own row; never sent: other people's ids are not for the app.
    participant_id: str = Field(exclude=True)
    display_name: str
    grams: int
    is_you: bool = False


class Leaderboard(BaseModel):
    scope: str
    key: str
    period: str
    starts: datetime
    entries: list[LeaderboardEntry]
    next_cursor: str | None = None


class ReviewOut(BaseModel):
    """A flagged credit's review: `open` (its points held), `approved` or `rejected`."""

    status: str
    reason: str | None = None
    text: str = Field(description="What became of the review, in the reader's language.")


class Explanation(BaseModel):
    credit_id: str
    status: str
    review: ReviewOut | None = Field(
        default=None, description="Set when the credit was flagged for review."
    )
    grams: int
    points: int
    trace: dict[str, Any]
    text: str
