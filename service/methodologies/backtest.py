"""Back-testing: a draft evaluated over the stored credits of a window, writing nothing.

Each stored credit is evaluated again under the version that made it (which must give the
stored numbers: invariant 5; any difference is counted in `mismatches`) and under the draft.
Caps are replayed exactly: the draft starts from the usage the credit saw (`usage_before`,
which includes other action types sharing the cap) plus what the draft changed in the same
cap periods for the same participant earlier in the window. Back-testing the version in force
therefore reproduces the stored credits exactly (tested).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from points_rules import CAPPED, Action, Methodology, Usage, evaluate
from service.crediting.schemas import engine_inputs
from service.methodologies import repository
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


async def backtest(
    session: AsyncSession,
    draft: Methodology,
    start: datetime,
    end: datetime,
    *,
    batch: int = 5000,
) -> BacktestReport:
    """Evaluate `draft` over the stored credits of its methodology in [start, end) (by when
    the action occurred). Reads in batches; writes nothing."""
    registry = await RegistryCache(ttl=0).get(session)
    # The draft applies as if in force over the whole window.
    draft.effective_start = min(draft.effective_start, start)
    draft.effective_end = None
    report = BacktestReport()
    # (participant, usage key) -> what the draft changed so far in that cap period.
    delta: dict[tuple[str, str], Usage] = defaultdict(lambda: Usage(0, 0))
    async for credit in repository.credits_in_window(session, draft.id, start, end, batch=batch):
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
        draft_usage = dict(stored_usage)
        for (who, key), change in delta.items():
            if who == participant:
                base = draft_usage.get(key, Usage(0, 0))
                draft_usage[key] = Usage(base.grams + change.grams, base.points + change.points)
        proposed = evaluate(draft, action, draft_usage)
        for key in proposed.usage_keys:
            was = delta[(participant, key)]
            delta[(participant, key)] = Usage(
                was.grams + proposed.grams - credit.grams,
                was.points + proposed.points - credit.points,
            )
        report.events += 1
        bucket = report.buckets.setdefault(
            (credit.action_type, credit.region, credit.status), Bucket()
        )
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
        points_change = proposed.points - current.points
        if points_change:
            report.participants[participant] = (
                report.participants.get(participant, 0) + points_change
            )
    return report
