"""Compiling a validated document into an immutable, precompiled Methodology."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from points_rules._document import MethodologyDoc, SourceMap, format_path, load_document_text
from points_rules._errors import MethodologyError, Problem
from points_rules._formula import (
    BoolType,
    Fn,
    FormulaError,
    InputSymbol,
    NumType,
    ScalarSymbol,
    StepSymbol,
    Symbol,
    TableSymbol,
    compile_expression,
)
from points_rules._units import DIMENSIONLESS, Unit, UnitError, parse_unit

__all__ = [
    "Methodology",
    "content_hash",
    "load_library",
    "load_methodology",
    "parse_methodology",
]

_GRAMS = parse_unit("g")


@dataclass(frozen=True, slots=True)
class InputSpec:
    """A compiled input declaration."""

    name: str
    kind: str  # "number", "integer", "category", "boolean"
    unit: Unit
    min: Decimal | None
    max: Decimal | None
    values: frozenset[str]
    required: bool


@dataclass(frozen=True, slots=True)
class Check:
    """A compiled eligibility or plausibility rule."""

    code: str
    message: str
    expr: str
    fn: Fn


@dataclass(frozen=True, slots=True)
class Step:
    """A compiled formula step."""

    name: str
    expr: str
    unit: Unit
    fn: Fn


@dataclass(frozen=True, slots=True)
class Cap:
    """A compiled cap."""

    key: str
    period: str
    max_points: int | None
    max_grams: int | None
    group: tuple[str, ...]


class Methodology:
    """One methodology version, validated and precompiled; treat it as immutable.

    ``doc`` is the validated document; everything the hot path needs is precomputed in slots.
    """

    __slots__ = (
        "_period_cache",
        "action_type",
        "caps",
        "claim_window",
        "content_hash",
        "doc",
        "effective_end",
        "effective_start",
        "eligibility",
        "file",
        "fixed_points",
        "id",
        "inputs",
        "max_clock_skew",
        "plausibility",
        "points_per_gram",
        "region",
        "result",
        "scenario",
        "steps",
        "title",
        "tz",
        "version",
    )

    def __init__(
        self,
        doc: MethodologyDoc,
        file: str,
        *,
        inputs: tuple[InputSpec, ...],
        plausibility: tuple[Check, ...],
        eligibility: tuple[Check, ...],
        steps: tuple[Step, ...],
        caps: tuple[Cap, ...],
        tz: ZoneInfo,
    ) -> None:
        self.doc = doc
        self.file = file
        self.id = doc.id
        self.version = doc.version
        self.title = doc.title
        self.action_type = doc.action_type
        self.region = doc.region
        self.scenario = doc.scenario
        self.tz = tz
        self.effective_start = dt.datetime.combine(doc.effective_from, dt.time(0), tz)
        self.effective_end = (
            dt.datetime.combine(doc.effective_to, dt.time(0), tz) if doc.effective_to else None
        )
        self.claim_window = dt.timedelta(days=doc.claim_window_days)
        self.max_clock_skew = dt.timedelta(seconds=doc.max_clock_skew_s)
        self.inputs = inputs
        self.plausibility = plausibility
        self.eligibility = eligibility
        self.steps = steps
        self.result = doc.result
        self.points_per_gram = doc.points.per_gram
        self.fixed_points = doc.points.fixed
        self.caps = caps
        self.content_hash = content_hash(doc)
        self._period_cache: dict[int, tuple[str, ...]] = {}

    def __repr__(self) -> str:
        return f"<Methodology {self.id} v{self.version} {self.action_type} {self.region or '*'}>"

    def title_in(self, language: str) -> str:
        """The title in ``language`` (a BCP 47 tag) when the document has it, else its own."""
        translation = self.doc.translations.get(language)
        return translation.title if translation and translation.title else self.title

    def description_in(self, language: str) -> str | None:
        """The description in ``language`` when the document has it, else its own."""
        translation = self.doc.translations.get(language)
        if translation and translation.description:
            return translation.description
        return self.doc.description

    def message_in(self, code: str, message: str, language: str) -> str:
        """A rule's failure ``message`` (of rule ``code``) in ``language`` when the document
        has it, else ``message``."""
        translation = self.doc.translations.get(language)
        if translation is None:
            return message
        return translation.messages.get(code, message)

    def in_force(self, at: dt.datetime) -> bool:
        """True when ``at`` (an aware datetime) is within the effective period."""
        return self.effective_start <= at and (
            self.effective_end is None or at < self.effective_end
        )


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def content_hash(doc: MethodologyDoc) -> str:
    """SHA-256 (hex) of the canonical JSON of a document: keys sorted, no whitespace, numbers as
    normalised decimal strings, dates ISO. Formatting and comments in the YAML do not change it;
    any change of content does, except to ``translations`` (presentation only, so that a
    translation can be corrected without a new version, and documents without one keep the
    hash they had)."""
    canonical = json.dumps(
        _canonical(doc.model_dump(mode="python", exclude={"translations"})),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class _Builder:
    def __init__(self, doc: MethodologyDoc, smap: SourceMap) -> None:
        self.doc = doc
        self.smap = smap
        self.problems: list[Problem] = []
        self.symbols: dict[str, Symbol] = {}
        self.broken: set[str] = set()  # names whose definition has an error

    def problem(self, path: tuple[Any, ...], message: str) -> None:
        self.problems.append(self.smap.problem(path, message))

    def unit(self, path: tuple[Any, ...], text: str) -> Unit | None:
        try:
            return parse_unit(text)
        except UnitError as exc:
            self.problem(path, str(exc))
            return None

    def expression(self, path: tuple[Any, ...], text: str) -> Any:
        try:
            return compile_expression(text, self.symbols)
        except FormulaError as exc:
            if exc.unknown_name in self.broken:
                return None  # already reported where that name is defined
            line, col = self.smap.locate_in_scalar(path, text, exc.offset)
            self.problems.append(Problem(self.smap.file, format_path(path), exc.message, line, col))
            return None

    def build(self) -> Methodology:
        doc = self.doc
        tz: ZoneInfo | None = None
        try:
            tz = ZoneInfo(doc.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self.problem(("timezone",), f"unknown time zone {doc.timezone!r}")
        for name, param in doc.parameters.items():
            unit = self.unit(("parameters", name, "unit"), param.unit)
            if unit is None:
                self.broken.add(name)
                continue
            if param.table is not None:
                self.symbols[name] = TableSymbol(param.table, unit, param.default)
            else:
                assert param.value is not None
                self.symbols[name] = ScalarSymbol(param.value, unit)
        inputs: list[InputSpec] = []
        for name, spec in doc.inputs.items():
            if name in self.symbols:
                self.problem(("inputs", name), f"{name!r} is already a parameter")
                continue
            unit = self.unit(("inputs", name, "unit"), spec.unit)
            if unit is None:
                self.broken.add(name)
                continue
            kind = {"decimal": "number", "integer": "integer"}.get(spec.type, spec.type)
            if spec.type in ("category", "boolean") and unit != DIMENSIONLESS:
                self.problem(("inputs", name, "unit"), "category and boolean inputs have no unit")
            values = frozenset(spec.values or ())
            inputs.append(InputSpec(name, kind, unit, spec.min, spec.max, values, spec.required))
            sym_kind = "number" if kind == "integer" else kind
            self.symbols[name] = InputSymbol(sym_kind, unit, values, spec.required)
        plausibility = self.checks("plausibility")
        steps: list[Step] = []
        for i, step in enumerate(doc.formula):
            path = ("formula", i)
            if step.name in self.symbols:
                self.problem((*path, "name"), f"{step.name!r} is already defined")
                continue
            declared = self.unit((*path, "unit"), step.unit)
            compiled = self.expression((*path, "expr"), step.expr)
            if compiled is None or declared is None:
                self.broken.add(step.name)
                continue
            t = compiled.type
            if not isinstance(t, NumType):
                self.problem((*path, "expr"), "a formula step must compute a quantity")
                self.broken.add(step.name)
                continue
            if not t.zero_literal and t.unit != declared:
                self.problem(
                    (*path, "unit"), f"declared unit {declared} but the formula gives {t.unit}"
                )
                self.broken.add(step.name)
                continue
            self.symbols[step.name] = StepSymbol(NumType(declared))
            steps.append(Step(step.name, step.expr, declared, compiled.fn))
        eligibility = self.checks("eligibility")
        if doc.result is not None and doc.result not in self.broken:
            sym = self.symbols.get(doc.result)
            if not isinstance(sym, StepSymbol):
                self.problem(("result",), f"{doc.result!r} is not a formula step")
            elif not isinstance(sym.type, NumType) or sym.type.unit != _GRAMS:
                self.problem(("result",), f"the result must be in g, {doc.result!r} is not")
        caps: list[Cap] = []
        seen: set[str] = set()
        for i, cap in enumerate(doc.caps):
            if cap.key in seen:
                self.problem(("caps", i, "key"), f"duplicate cap key {cap.key!r}")
            seen.add(cap.key)
            group = tuple(cap.group) if cap.group else (doc.action_type,)
            if doc.action_type not in group:
                self.problem(
                    ("caps", i, "group"),
                    f"the group must include this action type {doc.action_type!r}",
                )
            if doc.scenario == "behaviour" and cap.points is None:
                self.problem(("caps", i), "a behaviour methodology credits no grams; cap points")
            caps.append(Cap(cap.key, cap.period, cap.points, cap.grams, group))
        if self.problems or tz is None:
            raise MethodologyError(self.problems)
        return Methodology(
            doc,
            self.smap.file,
            inputs=tuple(inputs),
            plausibility=plausibility,
            eligibility=eligibility,
            steps=tuple(steps),
            caps=tuple(caps),
            tz=tz,
        )

    def checks(self, section: str) -> tuple[Check, ...]:
        out: list[Check] = []
        items = self.doc.plausibility if section == "plausibility" else self.doc.eligibility
        codes: set[str] = set()
        for i, check in enumerate(items):
            path = (section, i, "require")
            if check.code in codes:
                self.problem((section, i, "code"), f"duplicate code {check.code!r}")
            codes.add(check.code)
            compiled = self.expression(path, check.require)
            if compiled is None:
                continue
            if not isinstance(compiled.type, BoolType):
                self.problem(path, "a rule must be a true/false condition")
                continue
            out.append(Check(check.code, check.message, check.require, compiled.fn))
        return tuple(out)


def parse_methodology(text: str, file: str = "<string>") -> Methodology:
    """Validate and compile methodology YAML text; raise MethodologyError with every problem
    found (file, field path, line:column)."""
    doc, smap = load_document_text(text, file)
    try:
        return _Builder(doc, smap).build()
    except MethodologyError:
        raise
    except (ArithmeticError, ValueError) as error:  # a claim window beyond any date, ...
        raise MethodologyError([Problem(file, "", f"unreadable value: {error}")]) from None


def load_methodology(path: str | Path) -> Methodology:
    """Read, validate and compile one methodology YAML file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise MethodologyError([Problem(str(p), "", f"cannot read: {exc.strerror}")]) from None
    return parse_methodology(decode_document(raw, str(p)), str(p))


def decode_document(raw: bytes, file: str) -> str:
    """UTF-8 text of a methodology file; anything else (a binary, another encoding) is a
    MethodologyError naming the line and column of the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        message = f"not UTF-8 text (byte 0x{raw[exc.start]:02x}): {exc.reason}"
        raise MethodologyError([Problem(file, "", message, line, column)]) from None


def load_library() -> tuple[Methodology, ...]:
    """The default methodology library shipped in ``points_rules/library/*.yaml``."""
    folder = resources.files("points_rules") / "library"
    found = sorted((f for f in folder.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name)
    return tuple(
        parse_methodology(f.read_text(encoding="utf-8"), f"library/{f.name}") for f in found
    )
