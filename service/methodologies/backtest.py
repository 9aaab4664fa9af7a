"""Back-testing: a draft evaluated over the stored credits of a window, writing nothing.

Each stored credit is evaluated again under the version that made it (which must give the
stored numbers: invariant 5; any difference is counted in `mismatches`) and under the draft.
Caps are replayed exactly: the draft starts from the usage the credit saw (`usage_before`,
which includes other action types sharing the cap) plus what the draft changed in the same
cap periods for the same participant earlier in the window. Back-testing the version in force
therefore reproduces the stored credits exactly (tested).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from points_rules import CAPPED, Action, Methodology, Registry, Usage, evaluate
from service.crediting.schemas import engine_inputs
from service.methodologies import repository
from service.methodologies.repository import StoredCredit
from service.methodologies.service import RegistryCache


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


Progress = Callable[[int], None]
"""Called after each page with the number of credits it held (the CLI's progress bar)."""


async def backtest_size(
    session: AsyncSession, draft: Methodology, start: datetime, end: datetime
) -> int:
    """How many stored credits `backtest` will evaluate over [start, end)."""
    return await repository.count_credits_in_window(session, draft.id, start, end)


async def backtest(
    session: AsyncSession,
    draft: Methodology,
    start: datetime,
    end: datetime,
    *,
    batch: int = 5000,
    progress: Progress | None = None,
) -> BacktestReport:
    """Evaluate `draft` over the stored credits of its methodology in [start, end) (by when
    the action occurred). Streams the window a page at a time and writes nothing.

    Memory does not grow with the events: one page, the report's groups, and per participant
    only what differs (the cap usage the draft changed, the points difference)."""
    registry = await RegistryCache(ttl=0).get(session)
    # The draft applies as if in force over the whole window (a copy: the caller's is kept).
    draft = copy.copy(draft)
    draft.effective_start = min(draft.effective_start, start)
    draft.effective_end = None
    report = BacktestReport()
    # participant -> usage key -> what the draft changed so far in that cap period (only
    # non-zero changes are kept).
    delta: dict[str, dict[str, Usage]] = {}
    async for page in repository.credits_in_window(session, draft.id, start, end, batch=batch):
        for credit in page:
            _one(report, delta, registry, draft, credit)
        if progress is not None:
            progress(len(page))
    return report


def _one(
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
    changed = delta.get(participant)
    draft_usage = stored_usage
    if changed:
        draft_usage = dict(stored_usage)
        for key, change in changed.items():
            base = draft_usage.get(key, _NONE)
            draft_usage[key] = Usage(base.grams + change.grams, base.points + change.points)
    proposed = evaluate(draft, action, draft_usage)
    grams_change, points_change = proposed.grams - credit.grams, proposed.points - credit.points
    if grams_change or points_change:
        changed = delta.setdefault(participant, {})
        for key in proposed.usage_keys:
            was = changed.get(key, _NONE)
            changed[key] = Usage(was.grams + grams_change, was.points + points_change)
    report.events += 1
    bucket = report.buckets.get((credit.action_type, credit.region, credit.status))
    if bucket is None:
        bucket = report.buckets[(credit.action_type, credit.region, credit.status)] = Bucket()
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
    if difference:
        report.participants[participant] = report.participants.get(participant, 0) + difference


_NONE = Usage(0, 0)
