"""Request and response shapes of the admin API. Every string and integer is bounded."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from service.accounts.passwords import MAX_LENGTH, MIN_LENGTH

RoleName = Literal[
    "program-admin", "methodology-author", "methodology-approver", "reviewer", "auditor"
]
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(value: str) -> str:
    if _CONTROL_OR_NEWLINE.search(value):
        raise ValueError("must not contain control characters")
    return value


def _text_document(value: str) -> str:
    # A YAML document: tabs and newlines are part of it, other control characters are not.
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


Line = Annotated[str, Field(min_length=1), AfterValidator(_no_control)]
AdminLoginName = Annotated[
    str, Field(min_length=3, max_length=120, pattern=r"^[a-z0-9][a-z0-9._@-]*$")
]
MAX_YAML_CHARS = 65_536


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdminLoginIn(_In):
    login: Annotated[str, Field(min_length=1, max_length=120), AfterValidator(_no_control)]
    password: str = Field(min_length=1, max_length=MAX_LENGTH)
    totp: str = Field(pattern=r"^[0-9]{6}$", description="the current 6-digit code")


class AdminTokenOut(BaseModel):
    admin_id: uuid.UUID
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (a scheme name)
    access_token: str
    expires_in: int
    roles: list[str]


class AdminIn(_In):
    login: AdminLoginName
    display_name: Annotated[Line, Field(max_length=120)]
    password: str = Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)
    roles: list[RoleName] = Field(min_length=1, max_length=5)


class AdminPatch(_In):
    roles: list[RoleName] | None = Field(default=None, min_length=1, max_length=5)
    status: Literal["active", "disabled"] | None = None


class AdminOut(BaseModel):
    id: uuid.UUID
    login: str
    display_name: str
    roles: list[str]
    status: str
    created_at: datetime


class AdminCreatedOut(AdminOut):
    totp_provisioning_uri: str = Field(description="shown once: enrol it in an authenticator")


class AuditEntryOut(BaseModel):
    id: int
    occurred_at: datetime
    admin_id: uuid.UUID | None
    actor: str
    role: str
    action: str
    target_type: str
    target_id: str
    before_digest: str | None
    after_digest: str | None
    request_id: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPageOut(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None


class DraftIn(_In):
    source_yaml: Annotated[
        str, Field(min_length=1, max_length=MAX_YAML_CHARS), AfterValidator(_text_document)
    ]


class DraftOut(BaseModel):
    id: int
    methodology_id: str
    version: int
    action_type: str
    region: str | None
    content_hash: str
    author_id: uuid.UUID
    created_at: datetime
    approved_by: uuid.UUID | None
    approved_at: datetime | None
    activate_at: datetime | None
    status: Literal["draft", "approved", "scheduled"]


class ChangeOut(BaseModel):
    section: str
    name: str
    field: str
    before: Any
    after: Any
    text: str


class DiffOut(BaseModel):
    draft_id: int
    against: str | None = Field(description="`id@vN` of the version in force, or null")
    changes: list[ChangeOut]


class ScheduleIn(_In):
    activate_at: AwareDatetime


class ScheduledOut(BaseModel):
    draft: DraftOut
    closes: str | None = Field(description="`id@vN` whose period now ends at `activate_at`")


class RetireIn(_In):
    at: AwareDatetime


class VersionOut(BaseModel):
    methodology_id: str
    version: int
    action_type: str
    region: str | None
    effective_from: datetime
    effective_to: datetime | None
    content_hash: str
    filed_at: datetime


class BacktestIn(_In):
    start: AwareDatetime = Field(description="window start (inclusive), e.g. 30 days ago")
    end: AwareDatetime = Field(description="window end (exclusive)")
    top: int = Field(default=10, ge=1, le=100, description="participants most affected")
