"""Evaluating one action under one methodology version: the hot path.

Everything that can be decided at load time already was (see ``_methodology``); here we only
check the action, run precompiled closures and apply caps. No pydantic on this path; Decimal
operations run in the engine's own context; grams and points are integers rounded toward zero.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, NamedTuple

from points_rules._errors import InvalidActionError
from points_rules._formula import DECIMAL_CONTEXT
from points_rules._methodology import Cap, Methodology

__all__ = [
    "Action",
    "CapWindow",
    "Outcome",
    "Reason",
    "Usage",
    "cap_windows",
    "evaluate",
    "usage_key",
]

InputValue = Decimal | int | str | bool

CREDITED: Final = "credited"
CAPPED: Final = "capped"
INELIGIBLE: Final = "ineligible"
IMPLAUSIBLE: Final = "implausible"
EXPIRED: Final = "expired"


class Usage(NamedTuple):
    """What a subject has already been credited in one cap period: grams and points."""

    grams: int
    points: int


_NO_USAGE: Final = Usage(0, 0)
_EMPTY: Mapping[str, Usage] = {}


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an outcome is what it is: a stable machine ``code`` and a human ``message``.

    The engine's own reasons also carry the English ``template`` of the message (a gettext
    message id with named ``%(placeholders)s``) and its ``params``, so that a caller can render
    the message in another language: ``translated_template % dict(reason.params)``. Reasons from
    a document's rules have no template; their translations are in the document
    (``Methodology.message_in``). Neither field takes part in equality.
    """

    code: str
    message: str
    template: str | None = field(default=None, compare=False)
    params: tuple[tuple[str, str], ...] = field(default=(), compare=False)


def N_(template: str) -> str:
    """Marks an engine message template for gettext extraction; returns it unchanged."""
    return template


def _reason(code: str, template: str, **params: object) -> Reason:
    shown = {k: str(v) for k, v in params.items()}
    return Reason(code, template % shown if shown else template, template, tuple(shown.items()))


@dataclass(slots=True)
class Action:
    """One reported action, as the engine sees it.

    ``occurred_at`` and ``received_at`` must be timezone-aware. ``inputs`` values are Decimal or
    int for quantities (never float), str for categories, bool for flags.
    """

    action_type: str
    occurred_at: dt.datetime
    received_at: dt.datetime
    inputs: Mapping[str, InputValue]
    region: str | None = None


@dataclass(slots=True)
class Outcome:
    """The result of evaluating one action: status, integer grams and points, reasons, the
    normalised inputs used, the methodology version, and the cap usage keys it counts against
    (the caller adds ``grams``/``points`` to each after crediting)."""

    status: str
    grams: int
    points: int
    reasons: tuple[Reason, ...]
    inputs: dict[str, InputValue]
    methodology_id: str
    methodology_version: int
    usage_keys: tuple[str, ...] = ()
    uncapped_grams: int = 0
    uncapped_points: int = 0
    exact_grams: Decimal | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view (Decimals as strings)."""
        return {
            "status": self.status,
            "grams": self.grams,
            "points": self.points,
            "reasons": [{"code": r.code, "message": r.message} for r in self.reasons],
            "inputs": {k: _jsonable(v) for k, v in self.inputs.items()},
            "methodology_id": self.methodology_id,
            "methodology_version": self.methodology_version,
            "usage_keys": list(self.usage_keys),
            "uncapped_grams": self.uncapped_grams,
            "uncapped_points": self.uncapped_points,
            "exact_grams": None if self.exact_grams is None else str(self.exact_grams),
        }


def _jsonable(value: InputValue) -> Any:
    return str(value) if isinstance(value, Decimal) else value


@dataclass(frozen=True, slots=True)
class CapWindow:
    """A cap's current period for one occurred_at: the usage key the caller counts under and the
    [start, end) window in the program's time zone, with the action types that share it."""

    cap_key: str
    period: str
    usage_key: str
    start: dt.datetime
    end: dt.datetime
    action_types: tuple[str, ...]
    max_points: int | None
    max_grams: int | None


def usage_key(cap_key: str, period: str, local_date: dt.date) -> str:
    """The usage key of a cap period: ``<cap key>@<label>`` where the label is the local date
    (day), ISO week ``2025-W10`` (week), ``2025-03`` (month) or ``2025`` (year)."""
    if period == "day":
        label = local_date.isoformat()
    elif period == "week":
        year, week, _ = local_date.isocalendar()
        label = f"{year}-W{week:02d}"
    elif period == "month":
        label = f"{local_date.year:04d}-{local_date.month:02d}"
    else:
        label = f"{local_date.year:04d}"
    return f"{cap_key}@{label}"


def _window(cap: Cap, local_date: dt.date, tz: dt.tzinfo) -> tuple[dt.datetime, dt.datetime]:
    if cap.period == "day":
        start = local_date
        end = start + dt.timedelta(days=1)
    elif cap.period == "week":
        start = local_date - dt.timedelta(days=local_date.weekday())
        end = start + dt.timedelta(days=7)
    elif cap.period == "month":
        start = local_date.replace(day=1)
        end = (start + dt.timedelta(days=32)).replace(day=1)
    else:
        start = local_date.replace(month=1, day=1)
        end = start.replace(year=start.year + 1)
    midnight = dt.time(0)
    return dt.datetime.combine(start, midnight, tz), dt.datetime.combine(end, midnight, tz)


def cap_windows(methodology: Methodology, occurred_at: dt.datetime) -> tuple[CapWindow, ...]:
    """Each cap's period for an action that occurred at ``occurred_at`` (aware), in the
    methodology's time zone (Asia/Shanghai by default). The caller sums a subject's credited
    grams/points per ``usage_key`` (or over ``action_types`` within [start, end)) and passes
    them to ``evaluate`` as ``usage_so_far``."""
    if occurred_at.tzinfo is None:
        raise InvalidActionError("occurred_at must be timezone-aware")
    local_date = occurred_at.astimezone(methodology.tz).date()
    out = []
    for cap in methodology.caps:
        start, end = _window(cap, local_date, methodology.tz)
        out.append(
            CapWindow(
                cap.key,
                cap.period,
                usage_key(cap.key, cap.period, local_date),
                start,
                end,
                cap.group,
                cap.max_points,
                cap.max_grams,
            )
        )
    return tuple(out)


def _usage_keys(m: Methodology, occurred_at: dt.datetime) -> tuple[str, ...]:
    local = occurred_at.astimezone(m.tz)
    ordinal = local.toordinal()
    cache = m._period_cache
    keys = cache.get(ordinal)
    if keys is None:
        if len(cache) > 4096:
            cache.clear()
        local_date = local.date()
        keys = tuple(usage_key(c.key, c.period, local_date) for c in m.caps)
        cache[ordinal] = keys
    return keys


_MUL = DECIMAL_CONTEXT.multiply
_MISSING: Final = object()


class _Stop(Exception):
    """Internal: evaluation ended early with an outcome status and reasons."""

    def __init__(self, status: str, reasons: tuple[Reason, ...]) -> None:
        self.status = status
        self.reasons = reasons


def _normalise(m: Methodology, raw: Mapping[str, InputValue]) -> dict[str, InputValue]:
    values: dict[str, InputValue] = {}
    missing: list[str] = []
    out_of_range: list[Reason] = []
    unknown: list[Reason] = []
    for spec in m.inputs:
        v: Any = raw.get(spec.name, _MISSING)
        if v is _MISSING or v is None:
            if spec.required:
                missing.append(spec.name)
            continue
        kind = spec.kind
        if kind == "number":
            tv = type(v)
            if tv is not Decimal:
                if tv is int:
                    v = Decimal(v)
                else:
                    raise InvalidActionError(
                        f"input {spec.name!r} must be a Decimal or int, got {tv.__name__}"
                    )
            if not v.is_finite():
                raise InvalidActionError(f"input {spec.name!r} must be finite")
        elif kind == "integer":
            if type(v) is not int:
                raise InvalidActionError(f"input {spec.name!r} must be an int")
        elif kind == "category":
            if type(v) is not str:
                raise InvalidActionError(f"input {spec.name!r} must be text")
            if v not in spec.values:
                unknown.append(
                    _reason(
                        "unknown_category",
                        N_("%(input)s %(value)s is not covered by this methodology"),
                        input=spec.name,
                        value=repr(v),
                    )
                )
        elif type(v) is not bool:
            raise InvalidActionError(f"input {spec.name!r} must be true or false")
        if (spec.min is not None and v < spec.min) or (spec.max is not None and v > spec.max):
            out_of_range.append(
                _reason(
                    "input_out_of_range",
                    N_("%(input)s = %(value)s %(unit)s is outside [%(min)s, %(max)s]"),
                    input=spec.name,
                    value=v,
                    unit=spec.unit,
                    min=spec.min,
                    max=spec.max,
                )
            )
        values[spec.name] = v
    if missing:
        raise _Stop(
            INELIGIBLE,
            tuple(
                _reason("input_missing", N_("required input %(input)s is missing"), input=n)
                for n in missing
            ),
        )
    if unknown:
        raise _Stop(INELIGIBLE, tuple(unknown))
    if out_of_range:
        raise _Stop(IMPLAUSIBLE, tuple(out_of_range))
    return values


def _run(m: Methodology, action: Action, env: dict[str, Any]) -> Outcome:
    """The evaluation proper, uncapped; ``env`` receives inputs and every computed step."""
    if action.action_type != m.action_type:
        raise InvalidActionError(
            f"action type {action.action_type!r} does not match methodology {m.action_type!r}"
        )
    occurred = action.occurred_at
    if occurred.tzinfo is None or action.received_at.tzinfo is None:
        raise InvalidActionError("occurred_at and received_at must be timezone-aware")
    inputs: dict[str, InputValue] = {}
    try:
        if occurred < m.effective_start or (
            m.effective_end is not None and occurred >= m.effective_end
        ):
            raise _Stop(
                INELIGIBLE,
                (
                    _reason(
                        "not_in_force",
                        N_("%(methodology)s v%(version)s is not in force at %(occurred_at)s"),
                        methodology=m.id,
                        version=m.version,
                        occurred_at=occurred.isoformat(),
                    ),
                ),
            )
        age = action.received_at - occurred
        if age > m.claim_window:
            raise _Stop(
                EXPIRED,
                (
                    _reason(
                        "claim_window_passed",
                        N_("reported %(age)s after the action; the claim window is %(days)s days"),
                        age=age,
                        days=m.claim_window.days,
                    ),
                ),
            )
        if -age > m.max_clock_skew:
            raise _Stop(
                IMPLAUSIBLE,
                (_reason("occurred_in_future", N_("the action is dated after it was received")),),
            )
        inputs = _normalise(m, action.inputs)
        env.update(inputs)
        failed = [c for c in m.plausibility if not c.fn(env)]
        if failed:
            raise _Stop(IMPLAUSIBLE, tuple(Reason(c.code, c.message) for c in failed))
        for step in m.steps:
            env[step.name] = step.fn(env)
        failed = [c for c in m.eligibility if not c.fn(env)]
        if failed:
            raise _Stop(INELIGIBLE, tuple(Reason(c.code, c.message) for c in failed))
        exact: Decimal | None = None
        if m.result is not None:
            exact = env[m.result]
            if exact <= 0:
                raise _Stop(
                    INELIGIBLE,
                    (
                        _reason(
                            "no_reduction",
                            N_("the action brings no emission reduction under this methodology"),
                        ),
                    ),
                )
            grams = int(exact)  # toward zero: never above the exact
            rate = m.points_per_gram
            assert rate is not None
            points = int(_MUL(grams, rate))
        else:
            grams = 0
            points = m.fixed_points or 0
    except _Stop as stop:
        return Outcome(stop.status, 0, 0, stop.reasons, inputs, m.id, m.version)
    except KeyError as exc:
        return Outcome(
            INELIGIBLE,
            0,
            0,
            (
                _reason(
                    "input_missing",
                    N_("input %(input)s is needed and missing"),
                    input=exc.args[0],
                ),
            ),
            inputs,
            m.id,
            m.version,
        )
    except ArithmeticError as exc:
        return Outcome(
            INELIGIBLE,
            0,
            0,
            (
                _reason(
                    "arithmetic_error",
                    N_("the formula could not be computed: %(error)s"),
                    error=type(exc).__name__,
                ),
            ),
            inputs,
            m.id,
            m.version,
        )
    keys = _usage_keys(m, occurred) if m.caps else ()
    return Outcome(CREDITED, grams, points, (), inputs, m.id, m.version, keys, grams, points, exact)


def apply_caps(m: Methodology, uncapped: Outcome, usage_so_far: Mapping[str, Usage]) -> Outcome:
    """Cap an uncapped outcome (see ``evaluate_uncapped``) by what the subject already has.

    Pure arithmetic on integers: no formula runs again, so a caller that evaluates every
    action once, before it knows the subject's usage, caps it later with this.
    """
    if uncapped.status != CREDITED or not m.caps:
        return uncapped
    grams, points, keys = uncapped.grams, uncapped.points, uncapped.usage_keys
    inputs, exact = uncapped.inputs, uncapped.exact_grams
    capped_grams, capped_points = grams, points
    binding: list[Reason] = []
    for cap, key in zip(m.caps, keys, strict=True):
        used = usage_so_far.get(key, _NO_USAGE)
        if cap.max_grams is not None:
            left = cap.max_grams - used.grams
            if left < capped_grams:
                capped_grams = left if left > 0 else 0
                binding.append(
                    _reason(
                        "cap",
                        N_("%(cap)s: %(left)s of %(limit)s g left"),
                        cap=key,
                        left=max(left, 0),
                        limit=cap.max_grams,
                    )
                )
    if capped_grams < grams and m.points_per_gram is not None:
        capped_points = int(_MUL(capped_grams, m.points_per_gram))
    for cap, key in zip(m.caps, keys, strict=True):
        if cap.max_points is not None:
            used = usage_so_far.get(key, _NO_USAGE)
            left = cap.max_points - used.points
            if left < capped_points:
                capped_points = left if left > 0 else 0
                binding.append(
                    _reason(
                        "cap",
                        N_("%(cap)s: %(left)s of %(limit)s points left"),
                        cap=key,
                        left=max(left, 0),
                        limit=cap.max_points,
                    )
                )
    if capped_grams == grams and capped_points == points:
        return Outcome(
            CREDITED, grams, points, (), inputs, m.id, m.version, keys, grams, points, exact
        )
    code = "cap_reached" if capped_points == 0 and capped_grams == 0 else "cap_partial"
    reasons = tuple(Reason(code, r.message, r.template, r.params) for r in binding)
    return Outcome(
        CAPPED,
        capped_grams,
        capped_points,
        reasons,
        inputs,
        m.id,
        m.version,
        keys,
        grams,
        points,
        exact,
    )


def evaluate(
    methodology: Methodology, action: Action, usage_so_far: Mapping[str, Usage] = _EMPTY
) -> Outcome:
    """Evaluate one action under one methodology version.

    ``usage_so_far`` maps usage keys (see ``cap_windows``/``Outcome.usage_keys``) to what the
    subject already has in that cap period. Deterministic: the same methodology, action and
    usage always give the same outcome. Raises InvalidActionError for a malformed action.
    """
    return apply_caps(methodology, _run(methodology, action, {}), usage_so_far)


def evaluate_uncapped(methodology: Methodology, action: Action) -> Outcome:
    """Evaluate one action as if no cap applied (its ``usage_keys`` name the caps it counts
    against); ``apply_caps`` then gives exactly what ``evaluate`` would with that usage."""
    return _run(methodology, action, {})
