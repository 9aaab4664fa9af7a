"""What partners send (Event) and what the server answers (Outcome, OutcomePage).

Events are checked when they are built, so a bad one fails in the partner's code with a clear
message instead of costing a round trip. Quantities are exact: int or Decimal (or a decimal
string), never float, and Decimals travel as JSON strings so no digit is lost. Outcomes tolerate
fields this SDK does not know yet, so a newer server does not break an older SDK.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from integrations._errors import InvalidEventError

__all__ = [
    "MAX_BATCH_SIZE",
    "Event",
    "Outcome",
    "OutcomePage",
    "OutcomeStatus",
    "Quantity",
    "Reason",
    "encode_json",
]

MAX_BATCH_SIZE = 1000
EXTERNAL_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")

Quantity = int | Decimal | str


class OutcomeStatus(StrEnum):
    """The statuses an Outcome may carry today. `Outcome.status` stays a plain str, so a status
    added by a newer server still parses; compare with these members (they equal their values).
    """

    CREDITED = "credited"
    CAPPED = "capped"
    PENDING = "pending"
    INELIGIBLE = "ineligible"
    IMPLAUSIBLE = "implausible"
    EXPIRED = "expired"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    REJECTED = "rejected"
    RETRACTED = "retracted"


def check_external_id(external_id: object) -> str:
    """Return `external_id` if it is 1..128 characters of `[A-Za-z0-9._:-]`, else raise."""
    if not isinstance(external_id, str) or not EXTERNAL_ID_PATTERN.fullmatch(external_id):
        raise InvalidEventError("external_id must be 1..128 characters of [A-Za-z0-9._:-]")
    return external_id


def _exact_quantity(name: str, value: object) -> Quantity:
    """Numbers exact (int or Decimal, never float); text for categories; bool for flags."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        raise InvalidEventError(
            f"quantity {name!r} is a float; floats are inexact, use an int or a Decimal "
            f"(e.g. Decimal('12.5'))"
        )
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidEventError(f"quantity {name!r} must be a finite Decimal")
        return value
    if isinstance(value, str):
        # Text is a category ("recyclables") or an exact decimal ("12.5"); never padding,
        # and never a number text that is not finite.
        try:
            parsed: Decimal | None = Decimal(value)
        except InvalidOperation:
            parsed = None
        if (
            not value
            or len(value) > 64
            or value != value.strip()
            or (parsed is not None and not parsed.is_finite())
        ):
            raise InvalidEventError(
                f"quantity {name!r} must be a category or a finite decimal number string"
            )
        return value
    raise InvalidEventError(
        f"quantity {name!r} must be an int, a Decimal, a string or a bool, "
        f"not {type(value).__name__}"
    )


def _quantity_json(value: Quantity) -> int | str:
    if isinstance(value, Decimal):
        # Fixed-point text, so "1E+3" reaches any server as "1000" and trailing zeros survive.
        return format(value, "f")
    return value


@dataclass(frozen=True)
class Event:
    """One verified low-carbon action a partner reports (e.g. a metro ride).

    `external_id` is the partner's own id and the idempotency key: sending the same event again
    (a retry, a replayed batch) cannot credit it twice. `subject_ref` is the partner's card or
    account number; it is left out of repr and never logged by the SDK.
    """

    external_id: str
    action_type: str
    occurred_at: dt.datetime
    subject_ref: str = field(repr=False)
    quantities: Mapping[str, Quantity] = field(default_factory=dict)
    region: str | None = None
    place_ids: Sequence[str] | None = None

    def __post_init__(self) -> None:
        check_external_id(self.external_id)
        if not isinstance(self.action_type, str) or not self.action_type.strip():
            raise InvalidEventError("action_type must be a non-empty string")
        if not isinstance(self.occurred_at, dt.datetime):
            raise InvalidEventError("occurred_at must be a datetime")
        if self.occurred_at.tzinfo is None or self.occurred_at.utcoffset() is None:
            raise InvalidEventError(
                "occurred_at must be timezone-aware (e.g. tzinfo=datetime.UTC or +08:00)"
            )
        if not isinstance(self.subject_ref, str) or not self.subject_ref:
            raise InvalidEventError("subject_ref must be a non-empty string")
        if not isinstance(self.quantities, Mapping):
            raise InvalidEventError("quantities must be a mapping of name to quantity")
        quantities: dict[str, Quantity] = {}
        for name, value in self.quantities.items():
            if not isinstance(name, str) or not name:
                raise InvalidEventError("quantity names must be non-empty strings")
            quantities[name] = _exact_quantity(name, value)
        object.__setattr__(self, "quantities", quantities)
        if self.region is not None and (not isinstance(self.region, str) or not self.region):
            raise InvalidEventError("region must be a non-empty string or None")
        if self.place_ids is not None:
            if isinstance(self.place_ids, str) or not all(
                isinstance(place, str) and place for place in self.place_ids
            ):
                raise InvalidEventError("place_ids must be a list of non-empty strings or None")
            object.__setattr__(self, "place_ids", tuple(self.place_ids))

    def __hash__(self) -> int:
        # Equal events share an external_id; the quantities dict itself is not hashable.
        return hash(self.external_id)

    def to_json(self) -> dict[str, Any]:
        """The event as the JSON object the API expects (Decimals as strings, RFC 3339 time)."""
        document: dict[str, Any] = {
            "external_id": self.external_id,
            "action_type": self.action_type,
            "occurred_at": self.occurred_at.isoformat(),
            "subject_ref": self.subject_ref,
            "quantities": {name: _quantity_json(v) for name, v in self.quantities.items()},
        }
        if self.region is not None:
            document["region"] = self.region
        if self.place_ids is not None:
            document["place_ids"] = list(self.place_ids)
        return document


def encode_json(document: Any) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are both signed and sent."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )


class Reason(BaseModel):
    """Why an outcome is what it is: a stable `code` and a human `message`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    code: str
    message: str = ""


class Outcome(BaseModel):
    """The server's verdict on one event. Unknown extra fields are kept (`model_extra`)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    external_id: str
    status: str
    grams: int = 0
    points: int = 0
    credit_id: str | None = None
    methodology_id: str | None = None
    methodology_version: int | None = None
    duplicate_of: dict[str, Any] | None = None
    reasons: list[Reason] = Field(default_factory=list)
    problem: dict[str, Any] | None = None
    received_at: dt.datetime | None = None


class OutcomePage(BaseModel):
    """One page of the outcomes feed; pass `next_cursor` as `after` to read on (None: the end)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    outcomes: list[Outcome]
    next_cursor: str | None = None


class _BatchResults(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    results: list[Outcome]
