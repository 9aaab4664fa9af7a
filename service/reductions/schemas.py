"""The reductions API's bodies and answers. Quantities are integers (grams, kilograms)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from service.fields import (
    CODE_PATTERN,
    METHODOLOGY_ID_MAX_LENGTH,
    REDUCTION_BENEFICIARY_MAX_LENGTH,
    REDUCTION_CODE_MAX_LENGTH,
    REDUCTION_HOLDER_NAME_MAX_LENGTH,
    REDUCTION_REASON_MAX_LENGTH,
    REGION_MAX_LENGTH,
    REGION_PATTERN,
    plain_text,
)
from service.reductions.serials import VINTAGE_PATTERN

MAX_KILOGRAMS = 10**12


class _In(BaseModel):
    # Strict: quantities are integers, never floats (2.0) or strings ("2").
    model_config = ConfigDict(extra="forbid", strict=True)


class PoolIn(_In):
    code: str = Field(pattern=CODE_PATTERN, max_length=REDUCTION_CODE_MAX_LENGTH)
    methodology_id: str = Field(
        min_length=1, max_length=METHODOLOGY_ID_MAX_LENGTH, pattern=r"^[a-z0-9][a-z0-9._-]*$"
    )
    version_min: int = Field(ge=1, le=1_000_000)
    version_max: int = Field(ge=1, le=1_000_000)
    region: str = Field(max_length=REGION_MAX_LENGTH, pattern=REGION_PATTERN)
    vintage: str = Field(
        pattern=VINTAGE_PATTERN, max_length=7, description="`2026` (a year), `2026-Q3` or `2026-07`"
    )
    min_kilograms: int = Field(
        ge=1, le=MAX_KILOGRAMS, description="The smallest batch a run may issue, in kg."
    )
    settle_hours: int = Field(
        ge=0,
        le=24 * 366,
        description="Credits are eligible this many hours after they were received (the "
        "window in which partners retract).",
    )


class PoolOut(BaseModel):
    code: str
    methodology_id: str
    version_min: int
    version_max: int
    region: str
    vintage: str
    vintage_start: datetime
    vintage_end: datetime
    min_grams: int
    settle_hours: int


class PoolPositionOut(BaseModel):
    pool: PoolOut
    balance_grams: int = Field(description="Grams of the pool's credits still standing.")
    issued_grams: int
    position_grams: int = Field(
        description="balance - issued: carried to the next batch (>= 0) or a shortfall the "
        "next batch makes good (< 0)."
    )
    reversed_after_pooling_credits: int = Field(
        description="The pool's credits reversed after they were pooled (its recorded shortfall,"
        " made good by the batches that followed)."
    )
    reversed_after_pooling_grams: int


class HolderIn(_In):
    code: str = Field(pattern=CODE_PATTERN, max_length=REDUCTION_CODE_MAX_LENGTH)
    name: str = plain_text(REDUCTION_HOLDER_NAME_MAX_LENGTH, 1)


class HolderOut(BaseModel):
    code: str
    name: str


class BlockOut(BaseModel):
    id: int
    batch_id: int
    serials: str
    serial_first: int
    serial_last: int
    kilograms: int
    status: str
    holder: str | None = Field(description="The organisation's code; null: the programme.")


class BlockTransferIn(_In):
    to_holder: str = Field(pattern=CODE_PATTERN, max_length=REDUCTION_CODE_MAX_LENGTH)
    from_holder: str | None = Field(
        default=None,
        pattern=CODE_PATTERN,
        max_length=REDUCTION_CODE_MAX_LENGTH,
        description="null: the programme",
    )
    kilograms: int | None = Field(default=None, ge=1, le=MAX_KILOGRAMS)


class BlockRetireIn(_In):
    holder: str | None = Field(
        default=None,
        pattern=CODE_PATTERN,
        max_length=REDUCTION_CODE_MAX_LENGTH,
        description="null: the programme",
    )
    kilograms: int | None = Field(default=None, ge=1, le=MAX_KILOGRAMS)
    beneficiary: str = plain_text(REDUCTION_BENEFICIARY_MAX_LENGTH, 1)
    reason: str = plain_text(REDUCTION_REASON_MAX_LENGTH, 1)


class RegistryTotalOut(BaseModel):
    vintage: str
    methodology_id: str
    issued_kg: int
    transferred_kg: int = Field(description="Held by organisations (retired or not).")
    retired_kg: int


class RegistryBlockOut(BaseModel):
    block_id: int
    batch_id: int
    serials: str
    serial_first: str
    serial_last: str
    kilograms: int
    methodology_id: str
    region: str
    vintage: str
    status: str
    holder: str | None = Field(description="The organisation's name; null: the programme.")
    retirement_id: int | None
    retired_at: datetime | None


class RegistryOut(BaseModel):
    programme: str
    unit: str
    grams_per_serial: int
    totals: list[RegistryTotalOut]
    blocks: list[RegistryBlockOut]
    next_cursor: str | None
