"""Field types the request schemas share, with limits taken from the columns they fill.

A string's maximum length is read from its column, so a schema cannot promise more than the
table holds (a region of 17 characters used to pass the pattern and fail the varchar(16) insert
with a 500). Integers that reach a bigint column or a path are bounded to int64. Text is refused
when it holds control characters: PostgreSQL cannot store NUL in text at all, and the others
have no business in a name. The checks are pydantic constraints (patterns run in pydantic-core's
compiled regex), so they cost no Python code per field on the crediting path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, AwareDatetime, Field
from sqlalchemy import String
from sqlalchemy.orm import InstrumentedAttribute

from service.models import (
    Admin,
    AdminAuditEntry,
    Merchant,
    MethodologyVersion,
    Organisation,
    Participant,
    Partner,
)

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

# C0 controls, DEL and C1 controls: never meaningful in names, codes or free text here.
NO_CONTROL_PATTERN = r"^[^\x00-\x1F\x7F-\x9F]*$"
REGION_PATTERN = r"^[A-Z]{2}(-[A-Z0-9]{1,6}){0,3}$"
# Merchant and partner codes (the services that create them check the same pattern).
CODE_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"


def column_length(column: InstrumentedAttribute[Any]) -> int:
    """The declared length of a `String(n)` column."""
    column_type = column.property.columns[0].type
    if not isinstance(column_type, String) or column_type.length is None:
        raise TypeError(f"{column} is not a String(n) column")
    return column_type.length


REGION_MAX_LENGTH = column_length(Participant.region)
# An organisation's name is also its participant's display name: the shorter column wins.
DISPLAY_NAME_MAX_LENGTH = column_length(Participant.display_name)
ORGANISATION_NAME_MAX_LENGTH = min(
    column_length(Organisation.name), column_length(Participant.display_name)
)

Region = Annotated[
    str,
    Field(
        max_length=REGION_MAX_LENGTH,
        pattern=REGION_PATTERN,
        description="An ISO 3166-2 style region code, e.g. `CN-JX` or `CN-JX-NC`.",
        examples=["CN-JX"],
    ),
]
DisplayName = Annotated[
    str,
    Field(min_length=1, max_length=DISPLAY_NAME_MAX_LENGTH, pattern=NO_CONTROL_PATTERN),
]
OrganisationName = Annotated[
    str,
    Field(min_length=1, max_length=ORGANISATION_NAME_MAX_LENGTH, pattern=NO_CONTROL_PATTERN),
]


def plain_text(max_length: int, min_length: int = 0) -> Any:
    """A string of at most `max_length` characters with no control characters."""
    return Field(min_length=min_length, max_length=max_length, pattern=NO_CONTROL_PATTERN)


Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]

RegionPath = Annotated[str, Path(max_length=REGION_MAX_LENGTH, pattern=REGION_PATTERN)]
RegionQuery = Annotated[str | None, Query(max_length=REGION_MAX_LENGTH, pattern=REGION_PATTERN)]


def id_path(description: str) -> Any:
    """A positive bigint id in a path: 1 to 2**63 - 1, else a 422 (never a 500)."""
    return Path(ge=1, le=INT64_MAX, description=description)


# A page cursor: opaque to clients; here the decimal text of a non-negative bigint.
CURSOR_PATTERN = r"^\d{1,18}$"
Cursor = Annotated[
    str | None,
    Query(
        pattern=CURSOR_PATTERN,
        description="The `next_cursor` of the previous page; absent for the first page.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=200, description="Items per page.")]


def cursor_offset(cursor: str | None) -> int:
    """The offset an offset-based `cursor` stands for (0 for the first page)."""
    return int(cursor) if cursor else 0


def next_offset_cursor(offset: int, limit: int, fetched: int) -> str | None:
    """The cursor of the next page, given that `limit + 1` rows were asked for."""
    return str(offset + limit) if fetched > limit else None


# Administrators and the methodology lifecycle (service/admin): lengths from their columns.
ADMIN_LOGIN_MAX_LENGTH = column_length(Admin.login)
ADMIN_DISPLAY_NAME_MAX_LENGTH = column_length(Admin.display_name)
METHODOLOGY_ID_MAX_LENGTH = column_length(MethodologyVersion.methodology_id)
AUDIT_ACTION_MAX_LENGTH = column_length(AdminAuditEntry.action)
PARTNER_NAME_MAX_LENGTH = column_length(Partner.name)
MERCHANT_NAME_MAX_LENGTH = column_length(Merchant.name)
# A text document (an uploaded YAML methodology): tabs and line breaks belong to it, the
# other C0 controls, DEL and the C1 controls do not.
TEXT_DOCUMENT_PATTERN = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"


def _utc_representable(value: datetime) -> datetime:
    try:
        value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+05:00, 9999-12-31T23:00-05:00: no UTC instant
        raise ValueError("must lie within the years 1 to 9999 in UTC") from None
    return value


# An instant with its UTC offset that PostgreSQL can store (a 422 naming the field, else).
Instant = Annotated[AwareDatetime, AfterValidator(_utc_representable)]
