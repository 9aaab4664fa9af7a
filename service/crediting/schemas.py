"""The partner API's shapes: events in, outcomes out."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    WithJsonSchema,
)

from service.fields import INT64_MAX, INT64_MIN, NO_CONTROL_PATTERN, Region, plain_text

EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
# Any exact decimal text a JSON number or a Decimal's str() can produce (no exponent).
_DECIMAL_TEXT = re.compile(r"^-?\d{1,40}(\.\d{1,40})?$")

# A quantity is a boolean, an integer, an exact decimal written as a string ("8000.5"), or
# short text. Every member is strict: a JSON float (8000.5, 8000.0, 8.0005e3) matches none and
# is refused, since a binary float cannot carry an exact decimal. Decimal instances are for
# Python callers only; JSON never produces one.
Quantity = Annotated[
    StrictBool
    | Annotated[int, Strict(), Field(ge=INT64_MIN, le=INT64_MAX)]
    | Annotated[Decimal, Strict()]
    | Annotated[str, Field(max_length=64, pattern=NO_CONTROL_PATTERN)],
    WithJsonSchema(
        {
            "description": "An integer, a boolean, or text; exact decimals are written as"
            ' strings ("8000.5"). JSON floats are refused.',
            "oneOf": [
                {"type": "boolean"},
                {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
                {"type": "string", "maxLength": 64, "pattern": NO_CONTROL_PATTERN},
            ],
        }
    ),
]


class EventIn(BaseModel):
    """One action as a partner reports it."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "external_id": "metro-2026-11-30-000123",
                    "action_type": "transit.metro",
                    "occurred_at": "2026-11-30T08:05:00+08:00",
                    "subject_ref": "6222021234567890",
                    "quantities": {"distance_m": 12345, "duration_s": 1500},
                    "region": "CN-JX",
                    "place_ids": ["station:NC-01", "station:NC-17"],
                }
            ]
        },
    )

    external_id: str = Field(pattern=EXTERNAL_ID_PATTERN)
    action_type: str = Field(pattern=r"^[a-z_]{1,30}\.[a-z_]{1,30}$")
    occurred_at: AwareDatetime
    # The partner's card or account number: turned into a keyed hash on arrival, never
    # stored, logged or echoed (repr=False keeps it out of reprs and tracebacks).
    subject_ref: Annotated[str, plain_text(128, min_length=1)] = Field(repr=False)
    quantities: dict[Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")], Quantity] = Field(
        default_factory=dict, max_length=32
    )
    region: Region | None = None
    # Station or place ids only: GPS traces are never accepted.
    place_ids: list[Annotated[str, plain_text(64)]] | None = Field(default=None, max_length=8)

    def engine_inputs(self) -> dict[str, Decimal | int | bool | str]:
        """Quantities as the methodology engine takes them: numeric text becomes Decimal."""
        return engine_inputs(self.quantities)


def engine_inputs(quantities: Mapping[str, Any]) -> dict[str, Decimal | int | bool | str]:
    """Numeric text (the way JSON carries exact decimals) becomes Decimal; never float."""
    inputs: dict[str, Decimal | int | bool | str] = {}
    for name, value in quantities.items():
        if isinstance(value, str) and _DECIMAL_TEXT.match(value):
            inputs[name] = Decimal(value)
        elif isinstance(value, bool | int | str | Decimal):
            inputs[name] = value
        else:
            raise ValueError(f"quantity {name!r} must be an integer, exact decimal or text")
    return inputs


class RetractionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, plain_text(64, min_length=1)] = Field(examples=["partner_correction"])


class ReasonOut(BaseModel):
    code: str
    message: str


class OutcomeOut(BaseModel):
    """What became of one event. `status` is final except `pending` (waiting for the
    subject to be linked) and `credited`/`capped` (until a retraction)."""

    external_id: str
    status: Literal[
        "credited",
        "capped",
        "pending",
        "ineligible",
        "implausible",
        "expired",
        "duplicate",
        "conflict",
        "rejected",
        "retracted",
    ]
    grams: int = 0
    points: int = 0
    credit_id: str | None = None
    methodology_id: str | None = None
    methodology_version: int | None = None
    duplicate_of: dict[str, Any] | None = None
    reasons: list[ReasonOut] = Field(default_factory=list)
    problem: dict[str, Any] | None = None
    received_at: datetime | None = None


class BatchOut(BaseModel):
    results: list[OutcomeOut]


class OutcomePage(BaseModel):
    outcomes: list[OutcomeOut]
    next_cursor: str | None
