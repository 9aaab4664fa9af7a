"""Request and response shapes of the admin API. Every string and integer is bounded."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from service.accounts.passwords import MAX_LENGTH, MIN_LENGTH
from service.fields import (
    ADMIN_DISPLAY_NAME_MAX_LENGTH,
    ADMIN_LOGIN_MAX_LENGTH,
    CODE_PATTERN,
    MERCHANT_NAME_MAX_LENGTH,
    PARTNER_NAME_MAX_LENGTH,
    TEXT_DOCUMENT_PATTERN,
    Instant,
    Region,
    plain_text,
)

RoleName = Literal[
    "program-admin", "methodology-author", "methodology-approver", "reviewer", "auditor"
]
AdminLoginName = Annotated[
    str,
    Field(min_length=3, max_length=ADMIN_LOGIN_MAX_LENGTH, pattern=r"^[a-z0-9][a-z0-9._@-]*$"),
]
MAX_YAML_CHARS = 65_536
MAX_BACKTEST_WINDOW = timedelta(days=366)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdminLoginIn(_In):
    # Any login is tried (a wrong one is the same 401 as a wrong password); no control
    # characters, no more than the column holds.
    login: Annotated[str, plain_text(ADMIN_LOGIN_MAX_LENGTH, min_length=1)]
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
    display_name: Annotated[str, plain_text(ADMIN_DISPLAY_NAME_MAX_LENGTH, min_length=1)]
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


class AdminPageOut(BaseModel):
    items: list[AdminOut]
    next_cursor: str | None = Field(description="the next page's `cursor`; null on the last")


class AuditPageOut(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None = Field(description="the next page's `cursor`; null on the last")


class DraftIn(_In):
    # A YAML document: tabs and line breaks belong to it, other control characters do not.
    source_yaml: str = Field(min_length=1, max_length=MAX_YAML_CHARS, pattern=TEXT_DOCUMENT_PATTERN)


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


class DraftDetailOut(DraftOut):
    source_yaml: str


class DraftPageOut(BaseModel):
    items: list[DraftOut]
    next_cursor: str | None = Field(description="the next page's `cursor`; null on the last")


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
    activate_at: Instant


class ScheduledOut(BaseModel):
    draft: DraftOut
    closes: str | None = Field(description="`id@vN` whose period now ends at `activate_at`")


class UnscheduledOut(BaseModel):
    draft: DraftOut = Field(description="approved again, no longer scheduled")
    reopens: str | None = Field(
        description="`id@vN` whose period the schedule had closed: open again, as before"
    )


class RetireIn(_In):
    at: Instant


class VersionOut(BaseModel):
    methodology_id: str
    version: int
    action_type: str
    region: str | None
    effective_from: datetime
    effective_to: datetime | None
    content_hash: str
    filed_at: datetime


class VersionPageOut(BaseModel):
    items: list[VersionOut]
    next_cursor: str | None = Field(description="the next page's `cursor`; null on the last")


class BacktestIn(_In):
    start: Instant = Field(description="window start (inclusive), e.g. 30 days ago")
    end: Instant = Field(description="window end (exclusive); at most 366 days after start")
    top: int = Field(default=10, ge=1, le=100, description="participants most affected")

    @field_validator("end")
    @classmethod
    def _a_window(cls, end: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and not timedelta(0) < end - start <= MAX_BACKTEST_WINDOW:
            raise ValueError("must be after start, and at most 366 days after it")
        return end


class BacktestGroupOut(BaseModel):
    action_type: str
    region: str | None
    status: str
    events: int
    grams_in_force: int
    points_in_force: int
    grams_draft: int
    points_draft: int
    grams_difference: int
    points_difference: int
    capped_in_force: int
    capped_draft: int


class AffectedOut(BaseModel):
    participant_id: str
    points_difference: int


class BacktestOut(BaseModel):
    draft_id: int
    events: int = Field(description="stored events evaluated: credits and events without one")
    mismatches: int = Field(
        description="stored outcomes (credits, and statuses of events without a credit) the "
        "version that made them no longer reproduces (0)"
    )
    groups: list[BacktestGroupOut] = Field(description="per action type, region and status")
    binding_caps: dict[str, int] = Field(description="cap reason code -> events it capped")
    most_affected: list[AffectedOut]


# --- partners and merchants (program-admin) ----------------------------------------------------

PARTNER_KINDS = Literal["transit", "bikeshare", "maas", "utility", "retail", "waste"]
OrganisationCode = Annotated[
    str, Field(pattern=CODE_PATTERN, examples=["nanchang-metro"], description="2-63 of a-z0-9-")
]
ActionTypeName = Annotated[str, Field(pattern=r"^[a-z_]{1,30}\.[a-z_]{1,30}$")]
MerchantScope = Literal["redeem", "refund", "settlement"]


class PartnerIn(_In):
    code: OrganisationCode
    name: Annotated[str, plain_text(PARTNER_NAME_MAX_LENGTH, min_length=1)]
    kind: PARTNER_KINDS
    action_types: list[ActionTypeName] = Field(min_length=1, max_length=32)
    region: Region | None = None
    rate_limit_per_second: int = Field(default=2000, ge=1, le=1_000_000)


class PartnerOut(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    kind: str
    action_types: list[str]
    region: str | None
    status: Literal["active", "suspended"]
    rate_limit_per_second: int
    created_at: datetime


class PartnerKeyOut(BaseModel):
    key_id: str
    created_at: datetime
    expires_at: datetime | None = Field(description="set by a rotation: the overlap's end")
    revoked_at: datetime | None


class IssuedPartnerKeyOut(BaseModel):
    key_id: str
    secret: str = Field(description="shown once: store it in the partner's secret store")


class PartnerCreatedOut(PartnerOut):
    key: IssuedPartnerKeyOut


class PartnerRotateIn(_In):
    overlap_hours: int = Field(
        default=24, ge=0, le=720, description="how long the old key keeps working"
    )


class PartnerRotatedOut(BaseModel):
    key: IssuedPartnerKeyOut
    previous: PartnerKeyOut


class PartnerPageOut(BaseModel):
    items: list[PartnerOut]
    next_cursor: str | None = Field(description="the next page's `cursor`; null on the last")


class MerchantIn(_In):
    code: OrganisationCode
    name: Annotated[str, plain_text(MERCHANT_NAME_MAX_LENGTH, min_length=1)]
    region: Region | None = None


class MerchantOut(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    region: str | None
    status: Literal["active", "suspended"]
    created_at: datetime


class MerchantKeyIn(_In):
    scopes: list[MerchantScope] = Field(min_length=1, max_length=3)


class IssuedMerchantKeyOut(BaseModel):
    key_id: str
    token: str = Field(description="`cpmk_<key id>_<secret>`, shown once")
    scopes: list[str]


class MerchantKeyOut(BaseModel):
    key_id: str
    scopes: list[str]
    terminal_id: uuid.UUID | None
    created_at: datetime
    revoked_at: datetime | None


class MerchantCreatedOut(MerchantOut):
    key: IssuedMerchantKeyOut


class MerchantRotatedOut(BaseModel):
    key: IssuedMerchantKeyOut
    previous: MerchantKeyOut = Field(description="revoked now")


class MerchantPageOut(BaseModel):
    items: list[MerchantOut]
    next_cursor: str | None = Field(description="the next page's `cursor`; null on the last")
