"""Explanations: a full trace regenerated from a methodology version and stored inputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from points_rules._evaluate import (
    N_,
    Action,
    Outcome,
    Reason,
    Usage,
    _run,
    apply_caps,
    cap_windows,
)
from points_rules._methodology import Methodology

__all__ = ["Trace", "explain"]


@dataclass(frozen=True, slots=True)
class ParameterTrace:
    """A parameter as used: value (or table), unit and provenance."""

    name: str
    value: str | dict[str, str]
    unit: str
    source: str
    region: str | None
    year: int | None
    program_choice: bool


@dataclass(frozen=True, slots=True)
class StepTrace:
    """A named intermediate value; ``value`` is None when evaluation stopped before it."""

    name: str
    expr: str
    unit: str
    value: str | None


@dataclass(frozen=True, slots=True)
class CheckTrace:
    """A rule and whether it held (None when not reached or not computable)."""

    stage: str
    code: str
    require: str
    passed: bool | None
    message: str


@dataclass(frozen=True, slots=True)
class CapTrace:
    """A cap period with what the subject had used before this action."""

    key: str
    usage_key: str
    period: str
    max_grams: int | None
    max_points: int | None
    used_grams: int
    used_points: int


@dataclass(frozen=True, slots=True)
class Trace:
    """Everything needed to check one outcome by hand."""

    methodology_id: str
    methodology_version: int
    title: str
    action_type: str
    region: str | None
    scenario: str
    content_hash: str
    occurred_at: str
    received_at: str
    parameters: tuple[ParameterTrace, ...]
    inputs: dict[str, str]
    checks: tuple[CheckTrace, ...]
    steps: tuple[StepTrace, ...]
    points_rule: str
    caps: tuple[CapTrace, ...]
    outcome: Outcome

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the whole trace."""
        return {
            "methodology": {
                "id": self.methodology_id,
                "version": self.methodology_version,
                "title": self.title,
                "action_type": self.action_type,
                "region": self.region,
                "scenario": self.scenario,
                "content_hash": self.content_hash,
            },
            "occurred_at": self.occurred_at,
            "received_at": self.received_at,
            "parameters": [
                {
                    "name": p.name,
                    "value": p.value,
                    "unit": p.unit,
                    "source": p.source,
                    "region": p.region,
                    "year": p.year,
                    "program_choice": p.program_choice,
                }
                for p in self.parameters
            ],
            "inputs": dict(self.inputs),
            "checks": [
                {
                    "stage": c.stage,
                    "code": c.code,
                    "require": c.require,
                    "passed": c.passed,
                    "message": c.message,
                }
                for c in self.checks
            ],
            "steps": [
                {"name": s.name, "expr": s.expr, "unit": s.unit, "value": s.value}
                for s in self.steps
            ],
            "points_rule": self.points_rule,
            "caps": [
                {
                    "key": c.key,
                    "usage_key": c.usage_key,
                    "period": c.period,
                    "max_grams": c.max_grams,
                    "max_points": c.max_points,
                    "used_grams": c.used_grams,
                    "used_points": c.used_points,
                }
                for c in self.caps
            ],
            "outcome": self.outcome.to_dict(),
        }

    def render_text(self, gettext: Callable[[str], str] | None = None) -> str:
        """A readable, plain-text explanation.

        ``gettext`` translates its labels: it gets each English template (named
        ``%(placeholders)s``) and returns the template to fill, so a caller with a catalogue
        renders the text in its reader's language. The engine's reasons are translated from
        their ``template``; the title, rule messages and reasons from a document are shown as
        they are in the trace (a caller translates them first, e.g. with ``dataclasses.replace``
        and ``Methodology.title_in`` / ``message_in``).
        """
        _tr = gettext or _same

        def _line(template: str, **params: object) -> str:
            return _tr(template) % params

        out = [
            f"{self.title}",
            _line(
                "  methodology %(id)s v%(version)s (%(action_type)s, %(region)s, %(scenario)s)",
                id=self.methodology_id,
                version=self.methodology_version,
                action_type=self.action_type,
                region=self.region or _tr("default region"),
                scenario=_tr(self.scenario),
            ),
            _line("  content sha256 %(hash)s", hash=self.content_hash),
            _line(
                "  occurred %(occurred_at)s, received %(received_at)s",
                occurred_at=self.occurred_at,
                received_at=self.received_at,
            ),
            _tr("parameters:"),
        ]
        for p in self.parameters:
            value = (
                p.value
                if isinstance(p.value, str)
                else ", ".join(f"{k}={v}" for k, v in p.value.items())
            )
            where = ", ".join(x for x in (p.region, str(p.year) if p.year else None) if x)
            out.append(f"  {p.name} = {value} {p.unit}")
            out.append(
                _line("      source: %(source)s", source=p.source)
                + (f" [{where}]" if where else "")
            )
        out.append(_tr("inputs:"))
        out.extend(f"  {k} = {v}" for k, v in self.inputs.items())
        if self.checks:
            out.append(_tr("rules:"))
            for c in self.checks:
                mark = {True: "ok  ", False: "FAIL", None: "-   "}[c.passed]
                out.append(f"  [{mark}] {_tr(c.stage)} {c.code}: {c.require}")
        if self.steps:
            out.append(_tr("formula:"))
            for s in self.steps:
                shown = _tr("(not reached)") if s.value is None else f"{s.value} {s.unit}"
                out.append(f"  {s.name} = {s.expr}")
                out.append(f"      = {shown}")
        out.append(_line("points rule: %(rule)s", rule=self.points_rule))
        for cap in self.caps:
            limits = ", ".join(
                x
                for x in (
                    _line("%(grams)s g", grams=cap.max_grams)
                    if cap.max_grams is not None
                    else None,
                    _line("%(points)s points", points=cap.max_points)
                    if cap.max_points is not None
                    else None,
                )
                if x
            )
            out.append(
                _line(
                    "cap %(cap)s (%(period)s, %(limits)s): used before %(grams)s g, "
                    "%(points)s points",
                    cap=cap.usage_key,
                    period=_tr(cap.period),
                    limits=limits,
                    grams=cap.used_grams,
                    points=cap.used_points,
                )
            )
        o = self.outcome
        out.append(
            _line(
                "outcome: %(status)s: %(grams)s g CO2e, %(points)s points",
                status=_tr(o.status),
                grams=o.grams,
                points=o.points,
            )
        )
        if o.exact_grams is not None:
            out.append(_line("  exact reduction %(grams)s g, rounded down", grams=o.exact_grams))
        out.extend(f"  {r.code}: {_reason_text(r, _tr)}" for r in o.reasons)
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render_text()


# Words the text shows from the trace's data; listed so that extraction finds them.
_WORDS = (
    N_("reduction"),
    N_("behaviour"),
    N_("plausibility"),
    N_("eligibility"),
    N_("day"),
    N_("week"),
    N_("month"),
    N_("year"),
    N_("credited"),
    N_("capped"),
    N_("ineligible"),
    N_("implausible"),
    N_("expired"),
)


def _same(text: str) -> str:
    return text


def _reason_text(reason: Reason, tr: Callable[[str], str]) -> str:
    if reason.template is None:
        return reason.message
    try:
        return tr(reason.template) % dict(reason.params)
    except (KeyError, ValueError, TypeError):
        return reason.message


def _show(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def explain(
    methodology: Methodology, action: Action, usage_so_far: Mapping[str, Usage] | None = None
) -> Trace:
    """Regenerate the full trace of ``evaluate(methodology, action, usage_so_far)``: every
    parameter with its source, every input, every rule, every named intermediate value with its
    unit, the caps and the outcome (identical to what ``evaluate`` returns)."""
    m = methodology
    usage = usage_so_far or {}
    env: dict[str, Any] = {}
    outcome = apply_caps(m, _run(m, action, env), usage)
    params = []
    for name, p in m.doc.parameters.items():
        value: str | dict[str, str]
        if p.table is not None:
            value = {k: _show(v) for k, v in p.table.items()}
            if p.default is not None:
                value["(default)"] = _show(p.default)
        else:
            value = _show(p.value)
        params.append(
            ParameterTrace(name, value, p.unit, p.source, p.region, p.year, p.program_choice)
        )
    checks: list[CheckTrace] = []
    for stage, rules in (("plausibility", m.plausibility), ("eligibility", m.eligibility)):
        for rule in rules:
            passed: bool | None
            try:
                passed = bool(rule.fn(env))
            except (KeyError, ArithmeticError):
                passed = None
            checks.append(CheckTrace(stage, rule.code, rule.expr, passed, rule.message))
    steps = tuple(
        StepTrace(s.name, s.expr, str(s.unit), _show(env[s.name]) if s.name in env else None)
        for s in m.steps
    )
    if m.points_per_gram is not None:
        points_rule = f"{_show(m.points_per_gram)} points per g, rounded down"
    else:
        points_rule = f"{m.fixed_points} points per action (behaviour scenario, no grams claimed)"
    caps: tuple[CapTrace, ...] = ()
    if action.occurred_at.tzinfo is not None:
        caps = tuple(
            CapTrace(
                w.cap_key,
                w.usage_key,
                w.period,
                w.max_grams,
                w.max_points,
                usage.get(w.usage_key, Usage(0, 0)).grams,
                usage.get(w.usage_key, Usage(0, 0)).points,
            )
            for w in cap_windows(m, action.occurred_at)
        )
    return Trace(
        m.id,
        m.version,
        m.title,
        m.action_type,
        m.region,
        m.scenario,
        m.content_hash,
        action.occurred_at.isoformat(),
        action.received_at.isoformat(),
        tuple(params),
        {k: _show(v) for k, v in outcome.inputs.items()},
        tuple(checks),
        steps,
        points_rule,
        caps,
        outcome,
    )
