"""The review queue's problems (RFC 9457, stable `type` URIs)."""

from __future__ import annotations

from service.errors import ConflictError, NotFoundError, ValidationProblem


class FlagNotFoundError(NotFoundError):
    slug = "review-flag-not-found"
    title = "No flagged credit with this id"


class AlreadyDecidedError(ConflictError):
    slug = "review-already-decided"
    title = "This flagged credit was already decided"


class RuleNotFoundError(NotFoundError):
    slug = "review-rule-not-found"
    title = "No flag rule with this name"


class InvalidRuleError(ValidationProblem):
    slug = "review-rule-invalid"
    title = "The rule's thresholds are not valid"


class AssigneeNotReviewerError(ValidationProblem):
    slug = "review-assignee-not-reviewer"
    title = "Flagged credits are assigned to active reviewers only"
