"""The methodology lifecycle: draft, diff, approve (four eyes), schedule, retire.

The admin API and the CLI call these same functions. Each act is recorded in the audit trail
in the act's own transaction. Filed versions never change: scheduling files the draft as a
new version whose period starts at the chosen instant T and closes the period of the version
in force at T at the same T (the closing is the one change a filed row allows), so every
instant belongs to exactly one version: no overlap, no gap.

Activation and retirement must lie at least `min_lead` in the future: every process's
registry cache (refreshed every few seconds) then knows the change before T arrives, and no
event already credited can fall on the wrong side of T.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import orjson
import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from points_rules import Change, Methodology, MethodologyError, Problem, diff, parse_methodology
from service import audit
from service.errors import BadRequestError
from service.fields import (
    METHODOLOGY_ID_MAX_LENGTH,
    REGION_MAX_LENGTH,
    REGION_PATTERN,
    column_length,
)
from service.methodologies import repository
from service.methodologies.errors import (
    ActivationRefusedError,
    DraftNotFoundError,
    FourEyesError,
    LifecycleConflictError,
    MethodologyInvalidError,
    UnscheduleRefusedError,
    VersionExistsError,
    VersionNotFoundError,
)
from service.models import MethodologyDraft, MethodologyVersion

T = TypeVar("T")


def draft_state(draft: MethodologyDraft) -> dict[str, Any]:
    return {
        "id": draft.id,
        "methodology_id": draft.methodology_id,
        "version": draft.version,
        "content_hash": draft.content_hash,
        "author_id": draft.author_id,
        "approved_by": draft.approved_by,
        "approved_at": draft.approved_at,
        "activate_at": draft.activate_at,
        "closes": (
            f"{draft.closes_methodology_id}@v{draft.closes_version}"
            if draft.closes_methodology_id is not None
            else None
        ),
    }


def version_state(row: MethodologyVersion) -> dict[str, Any]:
    return {
        "methodology_id": row.methodology_id,
        "version": row.version,
        "content_hash": row.content_hash,
        "effective_from": row.effective_from,
        "effective_to": row.effective_to,
    }


def compile_version(row: MethodologyVersion | MethodologyDraft) -> Methodology:
    m = parse_methodology(row.source_yaml, f"{row.methodology_id}@v{row.version}")
    if isinstance(row, MethodologyVersion):
        # The filed period lives in the row: an activation at an exact instant, a closing.
        m.effective_start = row.effective_from
        m.effective_end = row.effective_to
    return m


# What a draft's header must fit: the columns it is filed in, and the region codes events carry.
_HEADER_LIMITS: tuple[tuple[str, int], ...] = (
    ("id", METHODOLOGY_ID_MAX_LENGTH),
    ("action_type", column_length(MethodologyDraft.action_type)),
)
_VERSION_MAX = 2**31 - 1  # an integer column


def _top_level_mark(source_yaml: str, key: str) -> tuple[int, int]:
    """1-based line and column of a top-level key's value (0, 0 if not found)."""
    for number, line in enumerate(source_yaml.splitlines(), start=1):
        if line.startswith(f"{key}:"):
            value = line[len(key) + 1 :]
            return number, len(key) + 2 + (len(value) - len(value.lstrip()))
    return 0, 0


def _refusing_aliases(source_yaml: str, file: str) -> None:
    """Anchors and aliases are refused in uploads: `&a [*a]` recurses without end, and a few
    nested aliases expand a 64 KiB upload into billions of nodes."""
    try:
        for token in yaml.scan(source_yaml, Loader=yaml.SafeLoader):
            if isinstance(token, yaml.AliasToken | yaml.AnchorToken):
                mark = token.start_mark
                raise MethodologyError(
                    [
                        Problem(
                            file,
                            "",
                            "anchors and aliases (& and *) are not allowed in a draft",
                            mark.line + 1,
                            mark.column + 1,
                        )
                    ]
                )
    except yaml.YAMLError:
        return  # parse_methodology reports the syntax error with its position


def _fits_its_columns(m: Methodology, source_yaml: str, file: str) -> None:
    problems = []
    for key, limit in _HEADER_LIMITS:
        if len(getattr(m, key)) > limit:
            line, column = _top_level_mark(source_yaml, key)
            problems.append(Problem(file, key, f"at most {limit} characters", line, column))
    if m.version > _VERSION_MAX:
        line, column = _top_level_mark(source_yaml, "version")
        problems.append(Problem(file, "version", f"at most {_VERSION_MAX}", line, column))
    if m.region is not None and (
        len(m.region) > REGION_MAX_LENGTH or not re.fullmatch(REGION_PATTERN, m.region)
    ):
        line, column = _top_level_mark(source_yaml, "region")
        problems.append(
            Problem(
                file,
                "region",
                f"a region code such as CN-JX (at most {REGION_MAX_LENGTH} characters), or null",
                line,
                column,
            )
        )
    if problems:
        raise MethodologyError(problems)


def parse_draft(source_yaml: str, file: str = "draft.yaml") -> Methodology:
    try:
        _refusing_aliases(source_yaml, file)
        try:
            m = parse_methodology(source_yaml, file)
        except MethodologyError:
            raise
        except RecursionError:
            too_deep = Problem(file, "", "the document is nested too deeply")
            raise MethodologyError([too_deep]) from None
        except (ValueError, OverflowError) as error:  # a date like 2026-02-30, a huge number
            raise MethodologyError([Problem(file, "", f"unreadable value: {error}")]) from None
        _fits_its_columns(m, source_yaml, file)
        return m
    except MethodologyError as error:
        raise MethodologyInvalidError(
            f"{len(error.problems)} problem(s) in the document",
            problems=[
                {
                    "file": p.file,
                    "path": p.path,
                    "line": p.line,
                    "column": p.column,
                    "message": p.message,
                }
                for p in error.problems
            ],
        ) from None


async def create_draft(
    session: AsyncSession, actor: audit.Actor, source_yaml: str, *, file: str = "draft.yaml"
) -> MethodologyDraft:
    """Upload a draft. Invalid YAML is a 422 naming each problem's line and column (in
    `file`: the CLI passes the path it read)."""
    m = parse_draft(source_yaml, file)
    if await repository.version(session, m.id, m.version) is not None or (
        await repository.draft_exists(session, m.id, m.version)
    ):
        raise VersionExistsError(f"{m.id} v{m.version} exists; give the draft a new version")
    draft = await repository.add_draft(
        session,
        MethodologyDraft(
            methodology_id=m.id,
            version=m.version,
            action_type=m.action_type,
            region=m.region,
            content_hash=m.content_hash,
            source_yaml=source_yaml,
            author_id=actor.admin_id,
        ),
    )
    await audit.record(
        session,
        actor,
        action="methodology.draft",
        target_type="methodology-draft",
        target_id=str(draft.id),
        after=draft_state(draft),
        detail={"methodology_id": m.id, "version": m.version},
    )
    return draft


async def get_draft(
    session: AsyncSession, draft_id: int, *, lock: bool = False
) -> MethodologyDraft:
    draft = await repository.draft(session, draft_id, for_update=lock)
    if draft is None:
        raise DraftNotFoundError(f"no methodology draft {draft_id}")
    return draft


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; `next_cursor` fetches the next, None on the last."""

    items: Sequence[T]
    next_cursor: str | None


async def list_drafts(
    session: AsyncSession, *, cursor: str | None = None, limit: int = 100
) -> Page[MethodologyDraft]:
    """Drafts newest first, `limit` of them after `cursor` (the last id of the page before:
    a keyset page, read by the index whatever the page's depth)."""
    before = int(cursor) if cursor else None
    rows = await repository.drafts_page(session, before=before, limit=limit + 1)
    if len(rows) > limit:
        return Page(rows[:limit], str(rows[limit - 1].id))
    return Page(rows, None)


async def version_in_force(
    session: AsyncSession, action_type: str, region: str | None, at: datetime
) -> MethodologyVersion | None:
    """The filed version of exactly this action type and region in force at `at`."""
    return await repository.version_in_force(session, action_type, region, at)


@dataclass(frozen=True, slots=True)
class DraftDiff:
    draft: MethodologyDraft
    in_force: MethodologyVersion | None
    changes: list[Change]


async def diff_draft(
    session: AsyncSession, draft_id: int, *, at: datetime | None = None
) -> DraftDiff:
    """The draft against the version in force (now, or at `at`) for its action type and
    region: parameters with sources, inputs, rules, formula steps, points, caps, claim window."""
    draft = await get_draft(session, draft_id)
    current = await version_in_force(
        session, draft.action_type, draft.region, at or datetime.now(UTC)
    )
    before = compile_version(current) if current is not None else None
    return DraftDiff(draft, current, diff(before, compile_version(draft)))


async def approve(session: AsyncSession, actor: audit.Actor, draft_id: int) -> MethodologyDraft:
    """Approve a draft: never by its author (four eyes; a CHECK in the table as well)."""
    draft = await get_draft(session, draft_id, lock=True)
    if draft.author_id == actor.admin_id:
        raise FourEyesError("someone other than the draft's author must approve it")
    if draft.approved_by is not None:
        raise LifecycleConflictError(f"draft {draft_id} is approved already")
    before = draft_state(draft)
    draft.approved_by = actor.admin_id
    draft.approved_at = datetime.now(UTC)
    await repository.save_draft(session, draft)
    await audit.record(
        session,
        actor,
        action="methodology.approve",
        target_type="methodology-draft",
        target_id=str(draft.id),
        before=before,
        after=draft_state(draft),
    )
    return draft


def _check_instant(at: datetime, now: datetime, min_lead: timedelta) -> None:
    if at.tzinfo is None:
        raise ActivationRefusedError("give the instant with its UTC offset")
    if at < now + min_lead:
        raise ActivationRefusedError(
            f"the instant must be at least {int(min_lead.total_seconds())} s in the future, "
            "so every process knows the change before it happens"
        )


@dataclass(frozen=True, slots=True)
class Scheduled:
    draft: MethodologyDraft
    previous: MethodologyVersion | None


async def schedule(
    session: AsyncSession,
    actor: audit.Actor,
    draft_id: int,
    activate_at: datetime,
    *,
    min_lead: timedelta,
    now: datetime | None = None,
) -> Scheduled:
    """File an approved draft, in force from `activate_at`; the version in force at that
    instant in the same scope ends at that instant."""
    moment = now or datetime.now(UTC)
    _check_instant(activate_at, moment, min_lead)
    draft = await get_draft(session, draft_id, lock=True)
    if draft.approved_by is None:
        raise LifecycleConflictError(f"draft {draft_id} is not approved")
    if draft.activate_at is not None:
        raise LifecycleConflictError(f"draft {draft_id} is scheduled already")
    m = compile_version(draft)
    if activate_at < m.effective_start or (
        m.effective_end is not None and activate_at >= m.effective_end
    ):
        raise ActivationRefusedError(
            "the instant is outside the document's own effective dates "
            f"({m.doc.effective_from}..{m.doc.effective_to or 'open'})"
        )
    scope = await repository.versions_in_scope(
        session, draft.action_type, draft.region, for_update=True
    )
    previous = None
    for row in scope:
        if row.effective_from >= activate_at:
            raise LifecycleConflictError(
                f"{row.methodology_id} v{row.version} starts at {row.effective_from.isoformat()}, "
                "not before this activation; retire or schedule around it"
            )
        if row.effective_to is None or row.effective_to > activate_at:
            previous = row
    if previous is not None and previous.effective_to is not None:
        raise LifecycleConflictError(
            f"{previous.methodology_id} v{previous.version} already ends at "
            f"{previous.effective_to.isoformat()}; its period cannot change again"
        )
    before_previous = version_state(previous) if previous is not None else None
    if previous is not None:
        await repository.close_period(
            session, previous.methodology_id, previous.version, activate_at
        )
    await repository.insert_version(
        session,
        {
            "methodology_id": draft.methodology_id,
            "version": draft.version,
            "action_type": draft.action_type,
            "region": draft.region,
            "effective_from": activate_at,
            "effective_to": m.effective_end,
            "content_hash": draft.content_hash,
            "source_yaml": draft.source_yaml,
        },
    )
    before = draft_state(draft)
    draft.activate_at = activate_at
    if previous is not None:
        draft.closes_methodology_id = previous.methodology_id
        draft.closes_version = previous.version
    await repository.save_draft(session, draft)
    if previous is not None:
        await session.refresh(previous)
    await audit.record(
        session,
        actor,
        action="methodology.schedule",
        target_type="methodology-draft",
        target_id=str(draft.id),
        before={"draft": before, "previous": before_previous},
        after={
            "draft": draft_state(draft),
            "previous": version_state(previous) if previous is not None else None,
        },
        detail={
            "methodology_id": draft.methodology_id,
            "version": draft.version,
            "activate_at": activate_at.isoformat(),
            "closes": (
                f"{previous.methodology_id} v{previous.version}" if previous is not None else None
            ),
        },
    )
    return Scheduled(draft, previous)


def _find(
    rows: Sequence[MethodologyVersion], methodology_id: str, number: int | None
) -> MethodologyVersion | None:
    return next(
        (r for r in rows if r.methodology_id == methodology_id and r.version == number), None
    )


@dataclass(frozen=True, slots=True)
class Unscheduled:
    draft: MethodologyDraft
    reopened: MethodologyVersion | None


async def unschedule(
    session: AsyncSession,
    actor: audit.Actor,
    draft_id: int,
    *,
    min_lead: timedelta,
    now: datetime | None = None,
) -> Unscheduled:
    """Undo a schedule whose instant is still ahead: the filed version is unfiled, the draft
    is approved again, and the version the schedule closed has its open period back, exactly
    as before.

    Refused (409) once the instant has passed, and also when it is nearer than the lead a
    schedule needs, or than the version's allowed clock skew: until then no process can hold
    a registry that lacks the undo at the instant, and no event dated at or after the
    instant can have been accepted (one dated up to the skew ahead of its receipt is), so
    nothing was credited under the version that disappears."""
    moment = now or datetime.now(UTC)
    draft = await get_draft(session, draft_id, lock=True)
    at = draft.activate_at
    if at is None:
        raise LifecycleConflictError(f"draft {draft_id} is not scheduled")
    if at <= moment:
        raise UnscheduleRefusedError(
            f"{draft.methodology_id} v{draft.version} came into force at {at.isoformat()}; "
            "retire it, or schedule a successor, instead"
        )
    lead = max(min_lead, compile_version(draft).max_clock_skew)
    if at < moment + lead:
        raise UnscheduleRefusedError(
            f"{draft.methodology_id} v{draft.version} comes into force at {at.isoformat()}, "
            f"within {int(lead.total_seconds())} s: too near to undo safely"
        )
    scope = await repository.versions_in_scope(
        session, draft.action_type, draft.region, for_update=True
    )
    filed = _find(scope, draft.methodology_id, draft.version)
    if filed is None:  # pragma: no cover - scheduling files it in the same transaction
        raise LifecycleConflictError(f"draft {draft_id} has no filed version")
    later = [r for r in scope if r.effective_from > at]
    if later:
        raise LifecycleConflictError(
            f"{later[0].methodology_id} v{later[0].version} is scheduled after it "
            f"(from {later[0].effective_from.isoformat()}); unschedule that one first"
        )
    previous = None
    if draft.closes_methodology_id is not None:
        previous = _find(scope, draft.closes_methodology_id, draft.closes_version)
        if previous is None or previous.effective_to != at:
            raise LifecycleConflictError(
                f"{draft.closes_methodology_id} v{draft.closes_version} no longer ends at "
                f"{at.isoformat()}; its period cannot be restored"
            )
    before = {
        "draft": draft_state(draft),
        "version": version_state(filed),
        "previous": version_state(previous) if previous is not None else None,
    }
    await repository.remove_version(session, filed.methodology_id, filed.version)
    session.expunge(filed)
    if previous is not None:
        await repository.reopen_period(session, previous.methodology_id, previous.version)
        await session.refresh(previous)
    draft.activate_at = None
    draft.closes_methodology_id = None
    draft.closes_version = None
    await repository.save_draft(session, draft)
    await audit.record(
        session,
        actor,
        action="methodology.unschedule",
        target_type="methodology-draft",
        target_id=str(draft.id),
        before=before,
        after={
            "draft": draft_state(draft),
            "version": None,
            "previous": version_state(previous) if previous is not None else None,
        },
        detail={
            "methodology_id": draft.methodology_id,
            "version": draft.version,
            "activate_at": at.isoformat(),
            "reopens": (
                f"{previous.methodology_id} v{previous.version}" if previous is not None else None
            ),
        },
    )
    return Unscheduled(draft, previous)


async def retire(
    session: AsyncSession,
    actor: audit.Actor,
    methodology_id: str,
    version: int,
    at: datetime,
    *,
    min_lead: timedelta,
    now: datetime | None = None,
) -> MethodologyVersion:
    """End a filed version's period at `at`; after it no version is in force in its scope
    until another is scheduled (a deliberate gap: events then meet `no-methodology`)."""
    _check_instant(at, now or datetime.now(UTC), min_lead)
    row = await repository.version(session, methodology_id, version, for_update=True)
    if row is None:
        raise VersionNotFoundError(f"no filed {methodology_id} v{version}")
    if row.effective_to is not None:
        raise LifecycleConflictError(
            f"{methodology_id} v{version} already ends at {row.effective_to.isoformat()}"
        )
    if at <= row.effective_from:
        raise ActivationRefusedError("a version cannot be retired before it starts")
    before = version_state(row)
    await repository.close_period(session, methodology_id, version, at)
    await session.refresh(row)
    await audit.record(
        session,
        actor,
        action="methodology.retire",
        target_type="methodology-version",
        target_id=f"{methodology_id}@v{version}",
        before=before,
        after=version_state(row),
    )
    return row


def _version_cursor(key: repository.VersionKey) -> str:
    text = orjson.dumps([*key[:2], key.effective_from.isoformat(), *key[3:]])
    return base64.urlsafe_b64encode(text).rstrip(b"=").decode()


def _version_key(cursor: str) -> repository.VersionKey:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        action_type, region, start, methodology_id, version = orjson.loads(
            base64.urlsafe_b64decode(padded)
        )
        key = repository.VersionKey(
            str(action_type),
            str(region),
            datetime.fromisoformat(start),
            str(methodology_id),
            int(version),
        )
    except (ValueError, TypeError, binascii.Error):
        raise BadRequestError("the cursor is not one this API returned") from None
    if key.effective_from.tzinfo is None or not -(2**31) <= key.version < 2**31:
        raise BadRequestError("the cursor is not one this API returned")
    return key


async def filed_versions(
    session: AsyncSession, *, cursor: str | None = None, limit: int = 100
) -> Page[MethodologyVersion]:
    """Filed versions by action type, region and start, `limit` of them after `cursor`
    (an opaque keyset cursor: the sort key of the page before's last row)."""
    after = _version_key(cursor) if cursor else None
    rows = await repository.versions_page(session, after=after, limit=limit + 1)
    if len(rows) > limit:
        return Page(rows[:limit], _version_cursor(repository.VersionKey.of(rows[limit - 1])))
    return Page(rows, None)


async def all_filed_versions(session: AsyncSession) -> Sequence[MethodologyVersion]:
    """Every filed version, in the listing's order (the CLI's `versions`)."""
    return await repository.all_versions(session)
