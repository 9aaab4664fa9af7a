"""Back-testing: a draft evaluated over the stored events of a window, writing nothing.

Two streams of the window's stored outcomes, merged in crediting order (event id):

- **Credits.** Each is evaluated again under the version that made it (which must give the
  stored numbers: invariant 5; any difference is counted in `mismatches`) and under the draft.
- **Events with an outcome but no credit** (ineligible, implausible, expired, pending,
  duplicate, retracted before crediting). Each is evaluated again under the version that
  judged it, which must reproduce its stored status (else a mismatch; see `judge_uncredited`
  for what "reproduce" means when the reason lay outside the methodology), and under the
  draft, which may now credit it: then it is capped in the replay below like a credit, and
  its grams and points count for the draft (the version in force gave it none).

Caps are replayed in that one order. The draft starts from the usage the event saw and adds
what the draft changed in the same cap periods for the same participant earlier in the
window. For a credit, the usage it saw is stored (`usage_before`, which includes other action
types sharing the cap), so the replay is exact. For an event without a credit nothing is
stored, so the usage it saw is taken as the usage stored just after the participant's last
credit against the same key before it (any action type; `crediting.usage_seen_before`).
That is exact but for one approximation: a credit retracted between that credit and the
event still counts as used (when a retraction happened is not stored), so the draft may
credit such an event slightly less than crediting would have. Back-testing the version in
force reproduces the stored credits and the stored non-credit outcomes exactly (tested).

Whom a draft would credit for a newly accepted event: its stored participant, else the one
whose identity link stood when the event was received. With none, the event would have waited
for a link: it shows as `pending`, without points (a link made later, or a claim voucher
that named the participant without a link, is not replayed). Cross-partner de-duplication is
not replayed for newly accepted events either: a twin credited by another partner within the
duplicate window would have made one a `duplicate`.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from points_rules import (
    CAPPED,
    CREDITED,
    INELIGIBLE,
    Action,
    InvalidActionError,
    Methodology,
    Outcome,
    Reason,
    Registry,
    Usage,
    apply_caps,
    evaluate,
    evaluate_uncapped,
)
from service.crediting import service as crediting
from service.crediting.schemas import engine_inputs
from service.crediting.service import StoredCredit, UncreditedEvent
from service.methodologies.service import RegistryCache

_CREDITS = frozenset({CREDITED, CAPPED})
PENDING = "pending"
RETRACTED = "retracted"
OUTSIDE_THE_METHODOLOGY = frozenset({PENDING, "expired", "duplicate"})
"""Stored statuses an event can have although its methodology credits it: nobody linked its
identity (pending, then expired), or another partner's report of it was credited first."""


@dataclass(slots=True)
class Bucket:
    events: int = 0
    grams_in_force: int = 0
    points_in_force: int = 0
    grams_draft: int = 0
    points_draft: int = 0
    capped_in_force: int = 0
    capped_draft: int = 0


@dataclass(slots=True)
class BacktestReport:
    events: int = 0
    mismatches: int = 0
    buckets: dict[tuple[str, str | None, str], Bucket] = field(default_factory=dict)
    binding_caps: dict[str, int] = field(default_factory=dict)
    participants: dict[str, int] = field(default_factory=dict)

    def most_affected(self, top: int) -> list[tuple[str, int]]:
        ranked = sorted(self.participants.items(), key=lambda item: (-abs(item[1]), item[0]))
        return [item for item in ranked[:top] if item[1] != 0]

    def as_json(self, top: int) -> dict[str, Any]:
        return {
            "events": self.events,
            "mismatches": self.mismatches,
            "groups": [
                {
                    "action_type": action_type,
                    "region": region,
                    "status": status,
                    "events": b.events,
                    "grams_in_force": b.grams_in_force,
                    "points_in_force": b.points_in_force,
                    "grams_draft": b.grams_draft,
                    "points_draft": b.points_draft,
                    "grams_difference": b.grams_draft - b.grams_in_force,
                    "points_difference": b.points_draft - b.points_in_force,
                    "capped_in_force": b.capped_in_force,
                    "capped_draft": b.capped_draft,
                }
                for (action_type, region, status), b in sorted(
                    self.buckets.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2])
                )
            ],
            "binding_caps": self.binding_caps,
            "most_affected": [
                {"participant_id": p, "points_difference": d} for p, d in self.most_affected(top)
            ],
        }

    def bucket(self, action_type: str, region: str | None, status: str) -> Bucket:
        found = self.buckets.get((action_type, region, status))
        if found is None:
            found = self.buckets[(action_type, region, status)] = Bucket()
        return found


Progress = Callable[[int], None]
"""Called after each page read with the number of outcomes it held (the CLI's progress bar)."""


async def backtest_size(
    session: AsyncSession, draft: Methodology, start: datetime, end: datetime
) -> int:
    """How many stored outcomes (credits and events without one) `backtest` will evaluate."""
    return await crediting.count_stored_outcomes(session, draft.id, start, end)


async def backtest(
    session: AsyncSession,
    draft: Methodology,
    start: datetime,
    end: datetime,
    *,
    batch: int = 5000,
    progress: Progress | None = None,
) -> BacktestReport:
    """Evaluate `draft` over the stored events of its methodology in [start, end) (by when
    the action occurred): its credits and its events without one. Streams the window a page
    at a time and writes nothing.

    Memory does not grow with the events: a page of each stream, the report's groups, and per
    participant only what differs (the cap usage the draft changed, the points difference)."""
    registry = await RegistryCache(ttl=0).get(session)
    # The draft applies as if in force over the whole window (a copy: the caller's is kept).
    draft = copy.copy(draft)
    draft.effective_start = min(draft.effective_start, start)
    draft.effective_end = None
    report = BacktestReport()
    # participant -> usage key -> what the draft changed so far in that cap period (only
    # non-zero changes are kept).
    delta: dict[str, dict[str, Usage]] = {}
    upcoming = _Upcoming(_judged_pages(session, registry, draft, start, end, batch, progress))
    following = await upcoming.next_id()
    async for page in crediting.stored_credits(session, draft.id, start, end, batch=batch):
        for credit in page:
            while following < credit.event_id:
                _uncredited(report, delta, draft, upcoming.take())
                following = await upcoming.next_id()
            _credit(report, delta, registry, draft, credit)
        if progress is not None:
            progress(len(page))
    while following < _END:
        _uncredited(report, delta, draft, upcoming.take())
        following = await upcoming.next_id()
    return report


_END = 2**63
"""Beyond every event id: the merge's sentinel once a stream is exhausted."""


class _Upcoming:
    """The judged events without a credit, one at a time, read a page ahead."""

    def __init__(self, pages: AsyncIterator[list[Judged]]) -> None:
        self._pages = pages
        self._page: list[Judged] = []
        self._at = 0

    async def next_id(self) -> int:
        """The event id of the next one, `_END` when there is none."""
        if self._at == len(self._page):
            self._page, self._at = await anext(self._pages, []), 0
        return self._page[self._at].event.event_id if self._page else _END

    def take(self) -> Judged:
        judged = self._page[self._at]
        self._at += 1
        return judged


def _usage_with(stored: dict[str, Usage], changed: dict[str, Usage] | None) -> dict[str, Usage]:
    """The usage the draft sees: what was stored plus what the draft changed before."""
    if not changed:
        return stored
    usage = dict(stored)
    for key, change in changed.items():
        base = usage.get(key, _NONE)
        usage[key] = Usage(base.grams + change.grams, base.points + change.points)
    return usage


def _record_change(
    delta: dict[str, dict[str, Usage]],
    participant: str,
    keys: tuple[str, ...],
    grams: int,
    points: int,
) -> None:
    if keys and (grams or points):
        changed = delta.setdefault(participant, {})
        for key in keys:
            was = changed.get(key, _NONE)
            changed[key] = Usage(was.grams + grams, was.points + points)


def _credit(
    report: BacktestReport,
    delta: dict[str, dict[str, Usage]],
    registry: Registry,
    draft: Methodology,
    credit: StoredCredit,
) -> None:
    action = Action(
        action_type=credit.action_type,
        occurred_at=credit.occurred_at,
        received_at=credit.received_at,
        inputs=engine_inputs(credit.inputs),
        region=credit.region,
    )
    stored_usage = {k: Usage(g, p) for k, (g, p) in credit.usage_before.items()}
    current = evaluate(
        registry.get(credit.methodology_id, credit.methodology_version), action, stored_usage
    )
    if (current.status, current.grams, current.points) != (
        credit.status,
        credit.grams,
        credit.points,
    ):
        report.mismatches += 1
    participant = str(credit.participant_id)
    proposed = evaluate(draft, action, _usage_with(stored_usage, delta.get(participant)))
    # A draft that no longer credits it frees the room the credit took (the stored keys).
    keys = proposed.usage_keys or tuple(stored_usage)
    _record_change(
        delta, participant, keys, proposed.grams - credit.grams, proposed.points - credit.points
    )
    _count(report, credit.action_type, credit.region, credit.status, participant, current, proposed)


@dataclass(frozen=True, slots=True)
class Judged:
    """An event without a credit, judged again by the version that judged it and by the
    draft (uncapped); `usage` is what it saw, when the draft credits it."""

    event: UncreditedEvent
    in_force: Outcome
    mismatch: bool
    draft: Outcome
    draft_credits: bool
    usage: dict[str, Usage] = field(default_factory=dict)


def _evaluate_uncapped(methodology: Methodology, action: Action) -> Outcome:
    try:
        return evaluate_uncapped(methodology, action)
    except InvalidActionError as exc:
        # As crediting judges a stored event it cannot evaluate (`link_identity`).
        reason = Reason("invalid_input", str(exc))
        return Outcome(INELIGIBLE, 0, 0, (reason,), {}, methodology.id, methodology.version)


def _nothing(status: str, of: Outcome) -> Outcome:
    return Outcome(status, 0, 0, of.reasons, of.inputs, of.methodology_id, of.methodology_version)


def judge_uncredited(in_force: Methodology, draft: Methodology, event: UncreditedEvent) -> Judged:
    """Judge one stored event without a credit under the version that judged it and under
    the draft. Pure.

    Under the version: if its evaluation does not credit, that status must be the stored one;
    if it credits, the stored status must be one whose reason lies outside the methodology
    (`OUTSIDE_THE_METHODOLOGY`), which the version then keeps. Anything else is a mismatch. A
    retracted event stays retracted under both, unchecked (its status before is not kept).

    Under the draft: an evaluation that does not credit gives its status; one that credits an
    event kept from a credit by something outside the methodology keeps the stored status; one
    that credits an event the version rejected credits it (`draft_credits`, capped later in
    the replay), or leaves it `pending` when no participant was linked."""
    if event.status == RETRACTED:
        nothing = Outcome(RETRACTED, 0, 0, (), {}, in_force.id, in_force.version)
        return Judged(event, nothing, False, _nothing(RETRACTED, nothing), False)
    action = Action(
        action_type=event.action_type,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        inputs=engine_inputs(event.quantities),
        region=event.region,
    )
    current = _evaluate_uncapped(in_force, action)
    proposed = _evaluate_uncapped(draft, action)
    if current.status in _CREDITS:
        judged_now = _nothing(event.status, current)
        mismatch = event.status not in OUTSIDE_THE_METHODOLOGY
    else:
        judged_now = current
        mismatch = current.status != event.status
    if proposed.status not in _CREDITS:
        return Judged(event, judged_now, mismatch, proposed, False)
    if current.status in _CREDITS:
        return Judged(event, judged_now, mismatch, _nothing(event.status, proposed), False)
    if event.participant_id is None:
        return Judged(event, judged_now, mismatch, _nothing(PENDING, proposed), False)
    return Judged(event, judged_now, mismatch, proposed, True)


async def _judged_pages(
    session: AsyncSession,
    registry: Registry,
    draft: Methodology,
    start: datetime,
    end: datetime,
    batch: int,
    progress: Progress | None,
) -> AsyncIterator[list[Judged]]:
    """The window's events without a credit, judged, a page at a time; for those the draft
    would credit, the cap usage they saw is read for the whole page in one statement."""
    async for page in crediting.uncredited_events(session, draft.id, start, end, batch=batch):
        judged = [
            judge_uncredited(
                registry.get(event.methodology_id, event.methodology_version), draft, event
            )
            for event in page
        ]
        wanted = [
            (j.event.event_id, j.event.participant_id, key)
            for j in judged
            if j.draft_credits and j.event.participant_id is not None
            for key in j.draft.usage_keys
        ]
        seen = await crediting.usage_seen_before(session, wanted)
        for j in judged:
            if j.draft_credits:
                j.usage.update(
                    {key: seen.get((j.event.event_id, key), _NONE) for key in j.draft.usage_keys}
                )
        if progress is not None:
            progress(len(page))
        yield judged


def _uncredited(
    report: BacktestReport, delta: dict[str, dict[str, Usage]], draft: Methodology, judged: Judged
) -> None:
    event = judged.event
    if judged.mismatch:
        report.mismatches += 1
    participant = str(event.participant_id) if event.participant_id is not None else None
    proposed = judged.draft
    if judged.draft_credits and participant is not None:
        usage = _usage_with(judged.usage, delta.get(participant))
        proposed = apply_caps(draft, proposed, usage)
        _record_change(delta, participant, proposed.usage_keys, proposed.grams, proposed.points)
    _count(
        report,
        event.action_type,
        event.region,
        event.status,
        participant,
        judged.in_force,
        proposed,
    )


def _count(
    report: BacktestReport,
    action_type: str,
    region: str | None,
    status: str,
    participant: str | None,
    current: Outcome,
    proposed: Outcome,
) -> None:
    report.events += 1
    bucket = report.bucket(action_type, region, status)
    bucket.events += 1
    bucket.grams_in_force += current.grams
    bucket.points_in_force += current.points
    bucket.grams_draft += proposed.grams
    bucket.points_draft += proposed.points
    bucket.capped_in_force += current.status == CAPPED
    bucket.capped_draft += proposed.status == CAPPED
    if proposed.status == CAPPED:
        for reason in proposed.reasons:
            report.binding_caps[reason.code] = report.binding_caps.get(reason.code, 0) + 1
    difference = proposed.points - current.points
    if difference and participant is not None:
        report.participants[participant] = report.participants.get(participant, 0) + difference


_NONE = Usage(0, 0)
