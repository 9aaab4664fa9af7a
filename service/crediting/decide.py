"""Every crediting decision, in memory: the functional core of the crediting path.

The shell (`service.crediting.service`) claims a set of events, locks and loads the state
they need in a fixed number of statements, and hands it here. `decide` returns, for every
claimed event, its outcome (credited, capped, duplicate, pending, or the final status its
evaluation gave), the cap usage to add, and the credits the ledger must post. No I/O, no
clock, no randomness: the same candidates and state always give the same plan, which is
what the property tests in `tests/crediting/test_decide.py` rely on.

Rules, in the order they apply to each candidate (candidates are decided in the order given,
so a batch decides exactly as the same events sent one by one in that order would):

1. An evaluation that ended without crediting (ineligible, implausible, expired) is final;
   the subject does not matter.
2. A subject not linked to a participant waits as `pending` for the claim window.
3. The same participant's same action type within `duplicate_window` of a standing credit
   from *another* partner is that credit reported twice: `duplicate`, nothing credited.
4. Caps: the uncapped evaluation is capped by the usage so far (stored plus what earlier
   candidates of this plan used), `points_rules.apply_caps`.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from points_rules import CAPPED, CREDITED, Action, Methodology, Outcome, Usage, apply_caps

PENDING = "pending"
DUPLICATE = "duplicate"
CREDIT_STATUSES = frozenset({CREDITED, CAPPED})
FINAL_WITHOUT_SUBJECT = frozenset({"ineligible", "implausible", "expired"})


@dataclass(frozen=True, slots=True)
class Candidate:
    """A claimed event, evaluated once and uncapped (`points_rules.evaluate_uncapped`)."""

    event_id: int
    partner_id: uuid.UUID
    participant: uuid.UUID | None
    methodology: Methodology
    action: Action
    evaluation: Outcome


@dataclass(frozen=True, slots=True)
class StandingCredit:
    """A credit already made (not retracted), as de-duplication needs to see it."""

    event_id: int
    partner_id: uuid.UUID
    participant_id: uuid.UUID
    action_type: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class State:
    """What the shell loaded under the participants' locks."""

    usage: Mapping[tuple[uuid.UUID, str], Usage]
    standing: Sequence[StandingCredit]


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one candidate."""

    event_id: int
    status: str
    participant: uuid.UUID | None
    methodology: Methodology
    action: Action
    partner_id: uuid.UUID
    grams: int = 0
    points: int = 0
    reasons: tuple[dict[str, str], ...] = ()
    duplicate_of: int | None = None
    inputs: dict[str, Any] | None = None
    usage_before: dict[str, list[int]] | None = None

    @property
    def makes_credit(self) -> bool:
        """A `credits` row is written (credited or capped, even to zero)."""
        return self.status in CREDIT_STATUSES and self.participant is not None

    @property
    def posts(self) -> bool:
        """The ledger posts it (something to credit)."""
        return self.makes_credit and bool(self.grams or self.points)


@dataclass(slots=True)
class Plan:
    decisions: list[Decision] = field(default_factory=list)
    # (participant, usage key) -> (grams, points) to add; only non-zero entries.
    usage_added: dict[tuple[uuid.UUID, str], tuple[int, int]] = field(default_factory=dict)

    @property
    def credits(self) -> list[Decision]:
        return [d for d in self.decisions if d.posts]


def _reasons(outcome: Outcome) -> tuple[dict[str, str], ...]:
    return tuple({"code": r.code, "message": r.message} for r in outcome.reasons)


def jsonable_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    # Fixed-point text ("1000", never "1E+3"), so the stored value reads back exactly.
    return {k: format(v, "f") if isinstance(v, Decimal) else v for k, v in inputs.items()}


def pending_reason(methodology: Methodology) -> dict[str, str]:
    return {
        "code": "subject_not_linked",
        "message": "waiting for the participant to link this identity; credited if linked "
        f"within the {methodology.claim_window.days}-day claim window",
    }


def decide(candidates: Sequence[Candidate], state: State, *, duplicate_window: timedelta) -> Plan:
    """Decide every candidate, in order; see the module's docstring for the rules."""
    plan = Plan()
    standing: dict[tuple[uuid.UUID, str], list[StandingCredit]] = defaultdict(list)
    for credit in state.standing:
        standing[(credit.participant_id, credit.action_type)].append(credit)
    usage: dict[tuple[uuid.UUID, str], Usage] = dict(state.usage)
    added: dict[tuple[uuid.UUID, str], tuple[int, int]] = {}

    for c in candidates:
        evaluation = c.evaluation
        if evaluation.status not in CREDIT_STATUSES:
            plan.decisions.append(
                _decided(c, evaluation.status, None, reasons=_reasons(evaluation))
            )
            continue
        if c.participant is None:
            reasons = (pending_reason(c.methodology),)
            plan.decisions.append(_decided(c, PENDING, None, reasons=reasons))
            continue
        twin = _twin(standing, c, duplicate_window)
        if twin is not None:
            reason = {
                "code": "duplicate",
                "message": f"the same action was already credited as credit {twin}, "
                "reported by another partner",
            }
            plan.decisions.append(
                _decided(c, DUPLICATE, c.participant, duplicate_of=twin, reasons=(reason,))
            )
            continue
        keys = evaluation.usage_keys
        before = {k: usage.get((c.participant, k), Usage(0, 0)) for k in keys}
        outcome = apply_caps(c.methodology, evaluation, before)
        for key in keys:
            slot = (c.participant, key)
            used = usage.get(slot, Usage(0, 0))
            usage[slot] = Usage(used.grams + outcome.grams, used.points + outcome.points)
            if outcome.grams or outcome.points:
                grams, points = added.get(slot, (0, 0))
                added[slot] = (grams + outcome.grams, points + outcome.points)
        standing[(c.participant, c.action.action_type)].append(
            StandingCredit(
                c.event_id, c.partner_id, c.participant, c.action.action_type, c.action.occurred_at
            )
        )
        plan.decisions.append(
            _decided(
                c,
                outcome.status,
                c.participant,
                grams=outcome.grams,
                points=outcome.points,
                reasons=_reasons(outcome),
                inputs=jsonable_inputs(outcome.inputs),
                usage_before={k: [u.grams, u.points] for k, u in before.items()},
            )
        )
    plan.usage_added = added
    return plan


def _decided(
    c: Candidate,
    status: str,
    participant: uuid.UUID | None,
    *,
    grams: int = 0,
    points: int = 0,
    reasons: tuple[dict[str, str], ...] = (),
    duplicate_of: int | None = None,
    inputs: dict[str, Any] | None = None,
    usage_before: dict[str, list[int]] | None = None,
) -> Decision:
    return Decision(
        c.event_id,
        status,
        participant,
        c.methodology,
        c.action,
        c.partner_id,
        grams,
        points,
        reasons,
        duplicate_of,
        inputs,
        usage_before,
    )


def _twin(
    standing: Mapping[tuple[uuid.UUID, str], list[StandingCredit]],
    c: Candidate,
    window: timedelta,
) -> int | None:
    assert c.participant is not None
    for other in standing.get((c.participant, c.action.action_type), ()):
        if (
            other.partner_id != c.partner_id
            and abs(other.occurred_at - c.action.occurred_at) <= window
        ):
            return other.event_id
    return None
