"""Why the console refused a request: each its own stable problem type, shown as a page."""

from __future__ import annotations

from typing import ClassVar

from service.errors import ForbiddenError, ProblemError, UnauthenticatedError


class ConsoleLoginRequiredError(UnauthenticatedError):
    """No console session, or one that expired or was revoked: the browser is sent to log in."""

    slug: ClassVar[str] = "console-login-required"
    title: ClassVar[str] = "Log in to the console"


class CsrfRefusedError(ForbiddenError):
    slug: ClassVar[str] = "csrf-refused"
    title: ClassVar[str] = "The form's anti-forgery token is missing or wrong"


class ConsoleError(Exception):
    """A problem to answer as a console page (HTML), not as problem JSON."""

    def __init__(self, problem: ProblemError) -> None:
        super().__init__(problem.detail)
        self.problem = problem
