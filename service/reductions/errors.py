"""The reductions domain's problems, each with a stable type URI."""

from __future__ import annotations

from typing import ClassVar

from service.errors import ConflictError, NotFoundError, ProblemError


class PoolNotFoundError(NotFoundError):
    slug: ClassVar[str] = "pool-not-found"
    title: ClassVar[str] = "Reductions pool not found"


class PoolExistsError(ConflictError):
    slug: ClassVar[str] = "pool-exists"
    title: ClassVar[str] = "A pool with this code exists"


class InvalidPoolError(ProblemError):
    status: ClassVar[int] = 422
    slug: ClassVar[str] = "invalid-pool"
    title: ClassVar[str] = "The pool's definition is not valid"


class NothingToPoolError(ConflictError):
    slug: ClassVar[str] = "nothing-to-pool"
    title: ClassVar[str] = "No eligible credits to pool"


class PoolBelowMinimumError(ConflictError):
    slug: ClassVar[str] = "pool-below-minimum"
    title: ClassVar[str] = "Too few grams for a batch"


class BatchNotFoundError(NotFoundError):
    slug: ClassVar[str] = "batch-not-found"
    title: ClassVar[str] = "Batch not found"


class BlockNotFoundError(NotFoundError):
    slug: ClassVar[str] = "block-not-found"
    title: ClassVar[str] = "Serial block not found"


class HolderNotFoundError(NotFoundError):
    slug: ClassVar[str] = "holder-not-found"
    title: ClassVar[str] = "Organisation account not found"


class HolderExistsError(ConflictError):
    slug: ClassVar[str] = "holder-exists"
    title: ClassVar[str] = "An organisation account with this code exists"


class BlockNotHeldError(ConflictError):
    """The block was split, transferred away or retired, or another holder holds it."""

    slug: ClassVar[str] = "block-not-held"
    title: ClassVar[str] = "The block is not held by this account"


class BlockAlreadyRetiredError(ConflictError):
    slug: ClassVar[str] = "block-already-retired"
    title: ClassVar[str] = "The block was already retired"


class InvalidSplitError(ProblemError):
    status: ClassVar[int] = 422
    slug: ClassVar[str] = "invalid-split"
    title: ClassVar[str] = "The kilograms must be between 1 and the block's size"


class RetirementNotFoundError(NotFoundError):
    slug: ClassVar[str] = "retirement-not-found"
    title: ClassVar[str] = "Retirement not found"
