"""Certified reductions (issue 18): pools, issued batches with their provenance, serial
blocks, holders and retirements. Owned by `service.reductions`.

Serial numbers are kilograms of CO2e (one serial = 1 kg): a batch's `issued_grams` is a whole
number of kilograms and its serials `serial_first..serial_last` (inclusive) count them.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ExcludeConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, CreatedAtMixin

GRAMS_PER_SERIAL = 1000


class ReductionPool(CreatedAtMixin, Base):
    """What a pooling run gathers: one methodology (a version range), one region, one vintage."""

    __tablename__ = "reduction_pools"
    __table_args__ = (
        CheckConstraint("version_min >= 1 AND version_max >= version_min", name="versions"),
        CheckConstraint("vintage_end > vintage_start", name="vintage_period"),
        CheckConstraint("min_grams >= 1000 AND min_grams % 1000 = 0", name="min_whole_kg"),
        CheckConstraint("settle_hours >= 0", name="settle_non_negative"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    methodology_id: Mapped[str] = mapped_column(String(80), nullable=False)
    version_min: Mapped[int] = mapped_column(Integer, nullable=False)
    version_max: Mapped[int] = mapped_column(Integer, nullable=False)
    region: Mapped[str] = mapped_column(String(16), nullable=False)
    vintage: Mapped[str] = mapped_column(String(8), nullable=False)
    vintage_start: Mapped[datetime] = mapped_column(nullable=False)
    vintage_end: Mapped[datetime] = mapped_column(nullable=False)
    min_grams: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # A credit is eligible once this many hours have passed since it was received: the
    # window in which a partner's retraction is expected.
    settle_hours: Mapped[int] = mapped_column(Integer, nullable=False)
    created_by: Mapped[uuid.UUID | None] = mapped_column()


class ReductionBatch(Base):
    """One pooling run's batch: its grams, the pool's position before and after, its serials."""

    __tablename__ = "reduction_batches"
    __table_args__ = (
        UniqueConstraint("pool_id", "seq"),
        CheckConstraint("pooled_grams > 0", name="pooled_positive"),
        CheckConstraint(
            "issued_grams > 0 AND issued_grams % 1000 = 0", name="issued_whole_kilograms"
        ),
        CheckConstraint("closing_grams >= 0 AND closing_grams < 1000", name="closing_carry"),
        CheckConstraint(
            "opening_grams + pooled_grams - issued_grams = closing_grams", name="position_balances"
        ),
        CheckConstraint(
            "serial_first >= 1 AND (serial_last - serial_first + 1) * 1000 = issued_grams",
            name="serials_cover_issued",
        ),
        CheckConstraint("octet_length(credits_hash) = 32", name="credits_hash_length"),
        ExcludeConstraint(
            (text("int8range(serial_first, serial_last, '[]')"), "&&"),
            name="reduction_batches_serials_disjoint",
            using="gist",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    pool_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("reduction_pools.id"), nullable=False
    )
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    # The pool's position before this batch: grams carried from the last batch (>= 0) or a
    # shortfall left by reversals of pooled credits (< 0), made good by this batch.
    opening_grams: Mapped[int] = mapped_column(BigInteger, nullable=False)
    pooled_grams: Mapped[int] = mapped_column(BigInteger, nullable=False)
    issued_grams: Mapped[int] = mapped_column(BigInteger, nullable=False)
    closing_grams: Mapped[int] = mapped_column(BigInteger, nullable=False)
    serial_first: Mapped[int] = mapped_column(BigInteger, nullable=False)
    serial_last: Mapped[int] = mapped_column(BigInteger, nullable=False)
    credits_count: Mapped[int] = mapped_column(Integer, nullable=False)
    credits_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    ledger_transaction_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    issued_by: Mapped[uuid.UUID | None] = mapped_column()
    issued_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)


class ReductionBatchCredit(Base):
    """A pooled credit, part of its batch's provenance. Keyed by the credit's own key (its
    event id): the database refuses pooling a credit, and so any of its grams, twice."""

    __tablename__ = "reduction_batch_credits"
    __table_args__ = (
        CheckConstraint("grams > 0", name="grams_positive"),
        Index(None, "batch_id"),
    )

    credit_event_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("credits.event_id"), primary_key=True
    )
    batch_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("reduction_batches.id"), nullable=False
    )
    credit_transaction_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    grams: Mapped[int] = mapped_column(BigInteger, nullable=False)
    action_type: Mapped[str] = mapped_column(String(64), nullable=False)
    methodology_version: Mapped[int] = mapped_column(Integer, nullable=False)


class ReductionHolder(CreatedAtMixin, Base):
    """An organisation that can hold and retire serial blocks (a company; no person)."""

    __tablename__ = "reduction_holders"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)


class ReductionBlock(CreatedAtMixin, Base):
    """A contiguous run of a batch's serials and who holds it.

    A block is never resized: a transfer or a partial retirement marks it `split` and makes
    new blocks (its `parent_id`) covering exactly its serials. The blocks not `split` cover
    every batch's serials exactly once (the exclusion constraint and `reductions verify`).
    """

    __tablename__ = "reduction_blocks"
    __table_args__ = (
        CheckConstraint("serial_last >= serial_first", name="serials_ordered"),
        CheckConstraint("status IN ('active', 'split', 'retired')", name="status_known"),
        ExcludeConstraint(
            (text("int8range(serial_first, serial_last, '[]')"), "&&"),
            name="reduction_blocks_live_serials_disjoint",
            using="gist",
            where=text("status <> 'split'"),
        ),
        Index(None, "batch_id"),
        Index(None, "parent_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    batch_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("reduction_batches.id"), nullable=False
    )
    serial_first: Mapped[int] = mapped_column(BigInteger, nullable=False)
    serial_last: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # None: the programme holds it (not yet transferred).
    holder_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("reduction_holders.id"))
    status: Mapped[str] = mapped_column(String(8), nullable=False)
    parent_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("reduction_blocks.id"))


class ReductionRetirement(Base):
    """A block retired, once: the unique block id is the database's refusal of a second."""

    __tablename__ = "reduction_retirements"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    block_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("reduction_blocks.id"), unique=True, nullable=False
    )
    holder_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("reduction_holders.id"))
    beneficiary: Mapped[str] = mapped_column(String(200), nullable=False)
    reason: Mapped[str] = mapped_column(String(500), nullable=False)
    retired_by: Mapped[uuid.UUID | None] = mapped_column()
    retired_at: Mapped[datetime] = mapped_column(server_default=func.now(), nullable=False)
