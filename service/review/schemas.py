"""The review queue's API shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.fields import plain_text

RuleName = Literal["velocity", "overlap", "travel", "identity_churn", "partner_volume"]
RejectionReason = Literal[
    "implausible_trips",
    "overlapping_trips",
    "impossible_travel",
    "shared_identity",
    "partner_error",
    "not_eligible",
]
NOTE_MAX_LENGTH = 500


class RuleOut(BaseModel):
    rule: RuleName
    enabled: bool
    params: dict[str, Any]
    updated_at: datetime | None
    updated_by: uuid.UUID | None


class RulesOut(BaseModel):
    items: list[RuleOut]


class RuleIn(BaseModel):
    """A rule switched on or off, with its thresholds (any left out take their defaults)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool
    params: dict[Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")], Any] = Field(
        default_factory=dict, max_length=16
    )


class FlagOut(BaseModel):
    credit_id: str
    participant_id: uuid.UUID
    partner_id: uuid.UUID
    action_type: str
    occurred_at: datetime
    flagged_at: datetime
    rules: list[str]
    details: list[dict[str, Any]] = Field(
        description="Each rule broken, with the figures that broke it (`rule` names it)."
    )
    points: int
    grams: int
    status: Literal["open", "approved", "rejected"]
    assignee: uuid.UUID | None
    assigned_at: datetime | None
    decided_by: uuid.UUID | None
    decided_at: datetime | None
    reason: str | None
    reason_text: str | None = Field(
        default=None, description="The rejection's reason as the participant reads it."
    )
    note: str | None


class FlagPageOut(BaseModel):
    items: list[FlagOut]
    next_cursor: str | None


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee: uuid.UUID | None = Field(
        description="An active administrator with the reviewer role; null returns the credit "
        "to the pool."
    )


class ApproveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Annotated[str, plain_text(NOTE_MAX_LENGTH)] | None = None


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: RejectionReason = Field(description="What the participant is told, translated.")
    note: Annotated[str, plain_text(NOTE_MAX_LENGTH)] | None = Field(
        default=None, description="For reviewers and auditors only; never shown to the participant."
    )
