"""Why a methodology lifecycle request was refused."""

from __future__ import annotations

from typing import ClassVar

from service.errors import ConflictError, ForbiddenError, NotFoundError, ValidationProblem


class MethodologyInvalidError(ValidationProblem):
    """The uploaded YAML is not a valid methodology; `problems` lists each with its line and
    column (as `carbon-points methodology validate` prints them)."""

    slug: ClassVar[str] = "methodology-invalid"
    title: ClassVar[str] = "The methodology document is invalid"


class DraftNotFoundError(NotFoundError):
    slug: ClassVar[str] = "draft-not-found"
    title: ClassVar[str] = "No such methodology draft"


class VersionNotFoundError(NotFoundError):
    slug: ClassVar[str] = "methodology-version-not-found"
    title: ClassVar[str] = "No such filed methodology version"


class VersionExistsError(ConflictError):
    slug: ClassVar[str] = "methodology-version-exists"
    title: ClassVar[str] = "This methodology id and version is drafted or filed already"


class FourEyesError(ForbiddenError):
    slug: ClassVar[str] = "four-eyes"
    title: ClassVar[str] = "The author of a draft cannot approve it"


class LifecycleConflictError(ConflictError):
    slug: ClassVar[str] = "methodology-lifecycle-conflict"
    title: ClassVar[str] = "The draft or version is not in a state that allows this"


class ActivationRefusedError(ValidationProblem):
    slug: ClassVar[str] = "activation-refused"
    title: ClassVar[str] = "The activation or retirement instant is not allowed"


class UnscheduleRefusedError(ConflictError):
    slug: ClassVar[str] = "unschedule-too-late"
    title: ClassVar[str] = "The activation instant has passed, or is too near to be undone"
