"""The app's account shapes. Login names come in, never go out."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.accounts.logins import normalise_login
from service.accounts.passwords import MAX_LENGTH, MIN_LENGTH
from service.fields import NO_CONTROL_PATTERN, DisplayName, OrganisationName, Region, plain_text

Role = Literal["owner", "member"]

LoginName = str
_LOGIN_FIELD = Field(
    min_length=3,
    max_length=254,
    pattern=NO_CONTROL_PATTERN,
    description="A mobile number (`13812345678`, `+8613812345678`) or an email address.",
)


def _valid_login(value: str) -> str:
    # The message never repeats the value: it is a phone number or an email address.
    if normalise_login(value) is None:
        raise ValueError("must be a mobile number or an email address")
    return value


class RegisterIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "login": "13812345678",
                    "password": "correct horse battery staple",
                    "display_name": "小明",
                    "region": "CN-JX",
                }
            ]
        },
    )

    login: LoginName = _LOGIN_FIELD
    password: str = Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)
    display_name: DisplayName
    region: Region | None = None

    _check_login = field_validator("login")(_valid_login)

    @field_validator("display_name")
    @classmethod
    def _display_name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class LoginIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"login": "13812345678", "password": "correct horse battery staple"}]
        },
    )

    # Not validated beyond its length: a malformed name fails like a wrong password.
    login: LoginName = Field(min_length=1, max_length=254, pattern=NO_CONTROL_PATTERN)
    password: str = Field(min_length=1, max_length=MAX_LENGTH)


class RefreshIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"refresh_token": "cprt_3q2-7wE9..."}]},
    )

    refresh_token: str = plain_text(200, min_length=1)


class TokensOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "6f1c2a4e-8b7d-4c3e-9a1f-2d5e6b7c8a90",
                    "participant_id": "0b7e3f52-1c4d-4a8e-b6f9-3e2d1c0b9a87",
                    "token_type": "Bearer",
                    "access_token": "eyJhbGciOiJIUzI1NiIsImtpZCI6Imsx...",
                    "expires_in": 600,
                    "refresh_token": "cprt_3q2-7wE9...",
                    "refresh_expires_in": 2592000,
                }
            ]
        }
    )

    user_id: uuid.UUID
    participant_id: uuid.UUID
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (a scheme name)
    access_token: str
    expires_in: int = Field(description="Seconds the access token is valid for")
    refresh_token: str = Field(description="Use once with POST /v1/app/token/refresh")
    refresh_expires_in: int


class MembershipOut(BaseModel):
    organisation_id: uuid.UUID
    name: str
    role: Role


class MeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "6f1c2a4e-8b7d-4c3e-9a1f-2d5e6b7c8a90",
                    "participant_id": "0b7e3f52-1c4d-4a8e-b6f9-3e2d1c0b9a87",
                    "display_name": "小明",
                    "region": "CN-JX",
                    "created_at": "2026-11-30T08:00:00Z",
                    "organisations": [
                        {
                            "organisation_id": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
                            "name": "绿色咖啡馆",
                            "role": "owner",
                        }
                    ],
                }
            ]
        }
    )

    user_id: uuid.UUID
    participant_id: uuid.UUID
    display_name: str
    region: str | None
    created_at: datetime
    organisations: list[MembershipOut]


class OrganisationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "绿色咖啡馆", "region": "CN-JX"}]},
    )

    name: OrganisationName
    region: Region | None = None

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class MemberIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"login": "colleague@example.com", "role": "member"}]},
    )

    login: LoginName = _LOGIN_FIELD
    role: Role = "member"

    _check_login = field_validator("login")(_valid_login)


class MemberOut(BaseModel):
    user_id: uuid.UUID
    display_name: str
    role: Role
    added_at: datetime


class OrganisationOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "organisation_id": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
                    "participant_id": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
                    "name": "绿色咖啡馆",
                    "region": "CN-JX",
                    "created_at": "2026-11-30T08:00:00Z",
                    "your_role": "owner",
                    "members": [
                        {
                            "user_id": "6f1c2a4e-8b7d-4c3e-9a1f-2d5e6b7c8a90",
                            "display_name": "小明",
                            "role": "owner",
                            "added_at": "2026-11-30T08:00:00Z",
                        }
                    ],
                }
            ]
        }
    )

    organisation_id: uuid.UUID
    participant_id: uuid.UUID = Field(description="The organisation's points account")
    name: str
    region: str | None
    created_at: datetime
    your_role: Role
    members: list[MemberOut]
