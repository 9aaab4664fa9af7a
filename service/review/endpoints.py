"""The review queue's admin API (`/v1/admin/review/...`). Reviewers work the queue;
program administrators and auditors read it; program administrators set the rules. Every
endpoint is in the authorisation matrix (`tests/admin/test_authorisation.py`)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from service.admin.dependencies import AdminPrincipal, active_roles, require
from service.db import DbSession
from service.fields import CURSOR_PATTERN, INT64_MAX, Instant, Limit
from service.i18n import EN
from service.models import ReviewFlag
from service.review import service
from service.review.errors import AssigneeNotReviewerError
from service.review.schemas import (
    ApproveIn,
    AssignIn,
    FlagOut,
    FlagPageOut,
    RejectIn,
    RuleIn,
    RuleName,
    RuleOut,
    RulesOut,
)

router = APIRouter(prefix="/v1/admin/review")
REVIEW = "admin-review"

Reviewer = Annotated[AdminPrincipal, Depends(require("reviewer"))]
QueueReader = Annotated[AdminPrincipal, Depends(require("reviewer", "program-admin", "auditor"))]
RulesReader = Annotated[AdminPrincipal, Depends(require("program-admin", "reviewer", "auditor"))]
ProgramAdmin = Annotated[AdminPrincipal, Depends(require("program-admin"))]
CreditId = Annotated[int, Path(ge=1, le=INT64_MAX, description="The flagged credit's id.")]


def flag_out(flag: ReviewFlag, language: str = EN) -> FlagOut:
    return FlagOut(
        credit_id=str(flag.event_id),
        participant_id=flag.participant_id,
        partner_id=flag.partner_id,
        action_type=flag.action_type,
        occurred_at=flag.occurred_at,
        flagged_at=flag.flagged_at,
        rules=list(flag.rules),
        details=list(flag.details),
        points=flag.points,
        grams=flag.grams,
        status=flag.status,
        assignee=flag.assignee,
        assigned_at=flag.assigned_at,
        decided_by=flag.decided_by,
        decided_at=flag.decided_at,
        reason=flag.reason,
        reason_text=service.rejection_text(flag.reason, language) if flag.reason else None,
        note=flag.note,
    )


def _rule_out(view: service.RuleView) -> RuleOut:
    return RuleOut(
        rule=view.rule,
        enabled=view.enabled,
        params=view.params,
        updated_at=view.updated_at,
        updated_by=view.updated_by,
    )


@router.get("/flags", response_model=FlagPageOut, tags=[REVIEW], summary="The review queue")
async def list_flags(
    admin: QueueReader,
    session: DbSession,
    status: Literal["open", "approved", "rejected"] | None = "open",
    rule: RuleName | None = None,
    partner_id: uuid.UUID | None = None,
    assignee: Annotated[
        str | None,
        Query(
            max_length=36,
            pattern=r"^(me|none|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
            r"-[0-9a-fA-F]{12})$",
            description="An administrator's id, `me`, or `none` (unassigned).",
        ),
    ] = None,
    since: Annotated[Instant | None, Query(description="flagged at or after")] = None,
    until: Annotated[Instant | None, Query(description="flagged before")] = None,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="The `next_cursor` of the previous page."),
    ] = None,
    limit: Limit = 50,
) -> FlagPageOut:
    """Flagged credits, newest first, a keyset page at a time."""
    who: uuid.UUID | None = None
    if assignee == "me":
        who = admin.admin_id
    elif assignee not in (None, "none"):
        who = uuid.UUID(assignee)
    where = service.QueueFilter(
        status=status,
        rule=rule,
        partner_id=partner_id,
        assignee=who,
        unassigned=assignee == "none",
        since=since,
        until=until,
    )
    rows, next_cursor = await service.queue(
        session, where, cursor=int(cursor) if cursor else None, limit=limit
    )
    return FlagPageOut(
        items=[flag_out(r) for r in rows],
        next_cursor=None if next_cursor is None else str(next_cursor),
    )


@router.get(
    "/flags/{credit_id}",
    response_model=FlagOut,
    tags=[REVIEW],
    summary="A flagged credit: the rules it broke and why",
)
async def get_flag(admin: QueueReader, session: DbSession, credit_id: CreditId) -> FlagOut:
    return flag_out(await service.explain(session, credit_id))


@router.post(
    "/flags/{credit_id}/assign",
    response_model=FlagOut,
    tags=[REVIEW],
    summary="Assign a flagged credit to a reviewer",
)
async def assign_flag(
    admin: Reviewer, session: DbSession, credit_id: CreditId, body: AssignIn
) -> FlagOut:
    if body.assignee is not None:
        roles = await active_roles(session, body.assignee)
        if roles is None or "reviewer" not in roles:
            raise AssigneeNotReviewerError(
                f"administrator {body.assignee} is not an active reviewer", field="assignee"
            )
    return flag_out(await service.assign(session, admin.actor, credit_id, body.assignee))


@router.post(
    "/flags/{credit_id}/approve",
    response_model=FlagOut,
    tags=[REVIEW],
    summary="Approve a flagged credit: its points are released",
)
async def approve_flag(
    admin: Reviewer, session: DbSession, credit_id: CreditId, body: ApproveIn
) -> FlagOut:
    return flag_out(await service.approve(session, admin.actor, credit_id, note=body.note))


@router.post(
    "/flags/{credit_id}/reject",
    response_model=FlagOut,
    tags=[REVIEW],
    summary="Reject a flagged credit: it is reversed, and the participant told why",
)
async def reject_flag(
    admin: Reviewer, session: DbSession, credit_id: CreditId, body: RejectIn
) -> FlagOut:
    flag = await service.reject(session, admin.actor, credit_id, reason=body.reason, note=body.note)
    return flag_out(flag)


@router.get("/rules", response_model=RulesOut, tags=[REVIEW], summary="The flag rules")
async def list_rules(admin: RulesReader, session: DbSession) -> RulesOut:
    return RulesOut(items=[_rule_out(v) for v in await service.rules(session)])


@router.put(
    "/rules/{rule}",
    response_model=RuleOut,
    tags=[REVIEW],
    summary="Switch a flag rule on or off and set its thresholds",
)
async def set_rule(
    admin: ProgramAdmin, session: DbSession, request: Request, rule: RuleName, body: RuleIn
) -> RuleOut:
    view = await service.set_rule(
        session, admin.actor, rule, enabled=body.enabled, params=body.params
    )
    # This process sees the change at once; the others within their refresh interval.
    await request.app.state.flag_rules.refresh(session)
    return _rule_out(view)
