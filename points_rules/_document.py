"""The methodology document format: YAML text -> typed, frozen pydantic models.

The YAML is composed with PyYAML's SafeLoader into a node tree (no object construction from
tags, so it is as safe as ``yaml.safe_load``) and then converted by hand so that two things
``safe_load`` loses are kept: exact Decimals for numbers written with a fraction (``46.7`` never
becomes a float) and the line and column of every value, used to pinpoint errors.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from points_rules._errors import MethodologyError, Problem

__all__ = [
    "CapDoc",
    "CheckDoc",
    "InputDoc",
    "MethodologyDoc",
    "ParameterDoc",
    "PointsDoc",
    "SourceMap",
    "StepDoc",
    "load_document_text",
]

_NAME = r"^[a-z][a-z0-9_]*$"
# Decimal exponents beyond this are no factor anyone means (and overflow arithmetic later).
_MAX_EXPONENT = 100


def _in_range(value: Decimal) -> Decimal:
    if not value.is_finite() or (value and abs(value.adjusted()) > _MAX_EXPONENT):
        raise ValueError(f"a number between 1e-{_MAX_EXPONENT} and 1e{_MAX_EXPONENT}, or 0")
    return value


Number = Annotated[Decimal, AfterValidator(_in_range)]
Name = Annotated[str, Field(pattern=_NAME)]
Text = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=False)


class ParameterDoc(_Model):
    """A named factor: a scalar ``value`` or a ``table`` keyed by category, with its provenance."""

    value: Number | None = None
    table: dict[str, Number] | None = None
    default: Number | None = None
    unit: Text
    source: Text
    region: str | None = None
    year: int | None = None
    note: str | None = None

    @property
    def program_choice(self) -> bool:
        """True when no authoritative figure exists and the program chose the value."""
        return self.source.strip().lower().startswith("program choice")

    @model_validator(mode="after")
    def _one_value(self) -> ParameterDoc:
        if (self.value is None) == (self.table is None):
            raise ValueError("give exactly one of 'value' or 'table'")
        if self.default is not None and self.table is None:
            raise ValueError("'default' only applies to a 'table'")
        # a cited figure must say where and when it applies; 'year: null' is allowed (and must
        # be written) when the cited source gives none, so the gap is visible
        if not self.program_choice and (self.region is None or "year" not in self.model_fields_set):
            raise ValueError(
                "a sourced parameter needs 'region' and 'year' (null if the source gives none); "
                "otherwise start 'source' with 'program choice'"
            )
        return self


class InputDoc(_Model):
    """A typed input of an action, with its unit and plausibility bounds."""

    type: Literal["decimal", "integer", "category", "boolean"]
    unit: str = "1"
    min: Number | None = None
    max: Number | None = None
    values: list[Annotated[str, Field(min_length=1)]] | None = None
    required: bool = True
    description: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> InputDoc:
        if self.type == "category":
            if not self.values:
                raise ValueError("a category input needs 'values'")
            if len(set(self.values)) != len(self.values):
                raise ValueError("'values' has duplicates")
        elif self.values is not None:
            raise ValueError("'values' only applies to a category input")
        if self.type in ("category", "boolean") and (self.min is not None or self.max is not None):
            raise ValueError("'min'/'max' only apply to numeric inputs")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("'min' is greater than 'max'")
        return self


class CheckDoc(_Model):
    """An eligibility or plausibility rule: ``require`` must hold, else the action fails with
    ``code`` and ``message``."""

    code: Annotated[str, Field(pattern=_NAME)]
    require: Text
    message: Text


class StepDoc(_Model):
    """A named formula step with its declared unit (checked against the computed one)."""

    name: Name
    expr: Text
    unit: Text


class PointsDoc(_Model):
    """Points rule: ``per_gram`` (reduction scenarios) rounded down, or ``fixed`` per action."""

    per_gram: Number | None = Field(default=None, ge=0)
    rounding: Literal["down"] = "down"
    fixed: int | None = Field(default=None, ge=0)
    source: str | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> PointsDoc:
        if (self.per_gram is None) == (self.fixed is None):
            raise ValueError("give exactly one of 'per_gram' or 'fixed'")
        return self


class CapDoc(_Model):
    """A per-subject cap over a calendar period, in points and/or grams, possibly shared by a
    group of action types (every document in the group declares the same ``key``)."""

    key: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.\-]*$")]
    period: Literal["day", "week", "month", "year"]
    points: int | None = Field(default=None, ge=0)
    grams: int | None = Field(default=None, ge=0)
    group: list[str] | None = None
    source: str | None = None

    @model_validator(mode="after")
    def _some_limit(self) -> CapDoc:
        if self.points is None and self.grams is None:
            raise ValueError("a cap needs 'points' and/or 'grams'")
        return self


LanguageTag = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]


class TranslationDoc(_Model):
    """A document's reader-facing text in one more language (a BCP 47 tag, e.g. ``zh-CN``):
    its ``title``, ``description``, and rule ``messages`` by rule ``code``. Anything left out
    is shown in the document's own language. Translations are presentation: they are not part
    of the content hash, so correcting one needs no new version."""

    title: Text | None = None
    description: str | None = None
    messages: dict[Annotated[str, Field(pattern=_NAME)], Text] = Field(default_factory=dict)


class MethodologyDoc(_Model):
    """A versioned, effective-dated methodology for one action type and optional region."""

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.\-]*$")]
    version: int = Field(ge=1)
    title: Text
    description: str | None = None
    action_type: Annotated[str, Field(pattern=r"^[a-z]+\.[a-z_]+$")]
    region: str | None = None
    scenario: Literal["reduction", "behaviour"]
    effective_from: dt.date
    effective_to: dt.date | None = None
    timezone: str = "Asia/Shanghai"
    claim_window_days: int = Field(ge=0, le=36_500)
    max_clock_skew_s: int = Field(default=300, ge=0, le=86_400)
    parameters: dict[Name, ParameterDoc] = Field(default_factory=dict)
    inputs: dict[Name, InputDoc] = Field(default_factory=dict)
    eligibility: list[CheckDoc] = Field(default_factory=list)
    plausibility: list[CheckDoc] = Field(default_factory=list)
    formula: list[StepDoc] = Field(default_factory=list)
    result: Name | None = None
    points: PointsDoc
    caps: list[CapDoc] = Field(default_factory=list)
    translations: dict[LanguageTag, TranslationDoc] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _translated_rules_exist(self) -> MethodologyDoc:
        codes = {c.code for c in (*self.eligibility, *self.plausibility)}
        for language, translation in self.translations.items():
            unknown = sorted(set(translation.messages) - codes)
            if unknown:
                raise ValueError(
                    f"translations.{language}.messages names no rule of this document: "
                    + ", ".join(unknown)
                )
        return self

    @field_validator("effective_to")
    @classmethod
    def _ends_after_start(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        start = info.data.get("effective_from")
        if value is not None and start is not None and value <= start:
            raise ValueError("'effective_to' must be after 'effective_from'")
        return value

    @model_validator(mode="after")
    def _scenario_rules(self) -> MethodologyDoc:
        if self.scenario == "reduction":
            if self.result is None:
                raise ValueError("a reduction methodology needs 'result' (the step giving grams)")
            if self.points.per_gram is None:
                raise ValueError("a reduction methodology converts grams with 'points.per_gram'")
        else:
            if self.result is not None:
                raise ValueError("a behaviour methodology credits no grams: drop 'result'")
            if self.points.fixed is None:
                raise ValueError("a behaviour methodology awards 'points.fixed'")
        return self


# ----------------------------------------------------------------------------- YAML with marks


@dataclass(frozen=True, slots=True)
class _Mark:
    line: int  # 0-based
    column: int  # 0-based
    style: str | None
    kind: str  # "map", "seq" or "scalar"


class SourceMap:
    """Positions of the values in one document, addressed by field path."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.lines = text.splitlines()
        self.marks: dict[tuple[Any, ...], _Mark] = {}

    def locate(self, path: tuple[Any, ...]) -> tuple[int, int]:
        """1-based (line, column) of the deepest known node on ``path``; (0, 0) if none."""
        for cut in range(len(path), -1, -1):
            mark = self.marks.get(tuple(path[:cut]))
            if mark is not None:
                return mark.line + 1, mark.column + 1
        return 0, 0

    def locate_in_scalar(self, path: tuple[Any, ...], value: str, offset: int) -> tuple[int, int]:
        """1-based (line, column) of character ``offset`` of the scalar string at ``path``."""
        mark = self.marks.get(path)
        if mark is None:
            return self.locate(path)
        before = value[:offset]
        line_in = before.count("\n")
        col_in = offset - (before.rfind("\n") + 1)
        if mark.style in ("|", ">"):
            first = mark.line + 1
            while first < len(self.lines) and not self.lines[first].strip():
                first += 1
            indent = 0
            if first < len(self.lines):
                indent = len(self.lines[first]) - len(self.lines[first].lstrip(" "))
            return first + line_in + 1, indent + col_in + 1
        quote = 1 if mark.style in ("'", '"') else 0
        if line_in == 0:
            return mark.line + 1, mark.column + quote + col_in + 1
        return mark.line + line_in + 1, col_in + 1

    def problem(self, path: tuple[Any, ...], message: str) -> Problem:
        """A Problem located at ``path``."""
        line, col = self.locate(path)
        return Problem(self.file, format_path(path), message, line, col)


def format_path(path: tuple[Any, ...]) -> str:
    """``('formula', 1, 'expr')`` -> ``formula[1].expr``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_FLOAT_TEXT = re.compile(r"^[-+]?(\d[\d_]*)?(\.\d[\d_]*)?([eE][-+]?\d+)?$")


# Bounds that keep a hostile document (an upload, a file handed to the CLI) a clean
# MethodologyError: PyYAML's composer recurses once per level of nesting, and aliases let a
# few lines stand for billions of values (or for a value that contains itself). A real
# methodology is a few levels deep and a few hundred values long.
MAX_DEPTH = 64
MAX_VALUES = 100_000
_OPENING = (
    yaml.BlockMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.FlowSequenceStartToken,
)
_CLOSING = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def _too_deep(file: str, line: int, column: int) -> MethodologyError:
    message = f"the document is nested too deeply (more than {MAX_DEPTH} levels)"
    return MethodologyError([Problem(file, "", message, line, column)])


def _check_depth(text: str, file: str) -> None:
    """Refuse nesting beyond MAX_DEPTH before composing: the scanner walks the text without
    recursing, so the depth is known, with its position, before anything could overflow."""
    depth = 0
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, _OPENING):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = token.start_mark
                    raise _too_deep(file, mark.line + 1, mark.column + 1)
            elif isinstance(token, _CLOSING):
                depth -= 1
    except yaml.YAMLError:
        return  # composing reports the syntax error with its position


@dataclass(slots=True)
class _Walk:
    """What converting one document has spent: values made, and the nodes being expanded
    (an alias met again inside itself is a cycle)."""

    values: int = 0
    expanding: set[int] = field(default_factory=set)


def _to_python(
    node: yaml.Node,
    path: tuple[Any, ...],
    smap: SourceMap,
    problems: list[Problem],
    walk: _Walk,
) -> Any:
    kind = "map" if isinstance(node, yaml.MappingNode) else "seq"
    if isinstance(node, yaml.ScalarNode):
        kind = "scalar"
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    walk.values += 1
    if walk.values > MAX_VALUES:
        raise MethodologyError(
            [
                Problem(
                    smap.file,
                    format_path(path),
                    f"the document expands to more than {MAX_VALUES:,} values (aliases?)",
                    line,
                    column,
                )
            ]
        )
    if len(path) > MAX_DEPTH:  # reached through aliases: the text alone was shallow enough
        raise _too_deep(smap.file, line, column)
    smap.marks[path] = _Mark(line - 1, column - 1, getattr(node, "style", None), kind)
    if kind != "scalar":
        if id(node) in walk.expanding:
            raise MethodologyError(
                [
                    Problem(
                        smap.file,
                        format_path(path),
                        "an alias refers to a value that contains it",
                        line,
                        column,
                    )
                ]
            )
        walk.expanding.add(id(node))
        try:
            return _collection(node, path, smap, problems, walk)
        finally:
            walk.expanding.discard(id(node))
    assert isinstance(node, yaml.ScalarNode)
    return _scalar(node, path, smap, problems)


def _collection(
    node: yaml.Node,
    path: tuple[Any, ...],
    smap: SourceMap,
    problems: list[Problem],
    walk: _Walk,
) -> Any:
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _to_python(key_node, (*path, "<key>"), smap, problems, walk)
            if not isinstance(key, str | int) or isinstance(key, bool):
                problems.append(smap.problem(path, f"mapping key {key!r} is not text"))
                continue
            key = str(key)
            if key in result:
                line = key_node.start_mark.line + 1
                problems.append(
                    Problem(
                        smap.file,
                        format_path((*path, key)),
                        "duplicate key",
                        line,
                        key_node.start_mark.column + 1,
                    )
                )
            result[key] = _to_python(value_node, (*path, key), smap, problems, walk)
        return result
    return [_to_python(v, (*path, i), smap, problems, walk) for i, v in enumerate(node.value)]


def _scalar(
    node: yaml.ScalarNode, path: tuple[Any, ...], smap: SourceMap, problems: list[Problem]
) -> Any:
    tag = node.tag
    if tag == "tag:yaml.org,2002:float":
        text = node.value.replace("_", "")
        if not _FLOAT_TEXT.match(text):
            problems.append(smap.problem(path, f"{node.value!r} is not a finite number"))
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:  # pragma: no cover - the regex already filters
            problems.append(smap.problem(path, f"{node.value!r} is not a number"))
            return None
        if number and abs(number.adjusted()) > _MAX_EXPONENT:
            problems.append(smap.problem(path, f"{node.value!r} is out of range"))
            return None
        return number
    try:
        if tag == "tag:yaml.org,2002:int":
            return _CONSTRUCTOR.construct_yaml_int(node)
        if tag == "tag:yaml.org,2002:timestamp":
            return _CONSTRUCTOR.construct_yaml_timestamp(node)
    except (ValueError, OverflowError) as error:  # 2025-02-30, year 0, 5,000 digits
        if tag.endswith(":int"):
            why = f"{node.value[:20]}... is not a valid integer (too many digits)"
        else:
            why = f"{node.value!r} is not a valid date: {error}"
        problems.append(smap.problem(path, why))
        return None
    if tag == "tag:yaml.org,2002:bool":
        return _CONSTRUCTOR.construct_yaml_bool(node)
    if tag == "tag:yaml.org,2002:null":
        return None
    return node.value


def load_document_text(text: str, file: str) -> tuple[MethodologyDoc, SourceMap]:
    """Parse YAML text into a validated MethodologyDoc; raise MethodologyError with positions.

    Any text at all gives a document or a MethodologyError: nesting, aliases that expand
    without end or into themselves, dates and numbers no type can hold are problems with
    their line and column, never another exception."""
    smap = SourceMap(file, text)
    _check_depth(text, file)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, ...)
        before = text[: exc.position]
        line, col = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        reason = f"character U+{code:04X} is not allowed in YAML"
        raise MethodologyError([Problem(file, "", reason, line, col)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        reason = getattr(exc, "problem", None) or str(exc)
        raise MethodologyError([Problem(file, "", f"YAML syntax: {reason}", line, col)]) from None
    except RecursionError:  # pragma: no cover - _check_depth refuses such nesting first
        raise _too_deep(file, 0, 0) from None
    if root is None:
        raise MethodologyError([Problem(file, "", "empty document")])
    problems: list[Problem] = []
    data = _to_python(root, (), smap, problems, _Walk())
    if problems:
        raise MethodologyError(problems)
    if not isinstance(data, dict):
        raise MethodologyError([smap.problem((), "a methodology document must be a mapping")])
    try:
        doc = MethodologyDoc.model_validate(data)
    except ValidationError as exc:
        raise MethodologyError([_problem_from(err, smap) for err in exc.errors()]) from None
    return doc, smap


def _problem_from(err: Any, smap: SourceMap) -> Problem:
    loc = tuple(err["loc"])
    # pydantic appends union-member names ('decimal', 'str') to loc; keep only real path parts
    path = tuple(p for p in loc if isinstance(p, int) or (isinstance(p, str) and "[" not in p))
    # ... and type names ('decimal', 'int') under a scalar: trim those too
    while len(path) > 1 and path not in smap.marks:
        parent = smap.marks.get(path[:-1])
        if parent is None or parent.kind == "map":
            break
        path = path[:-1]
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if err["type"] == "missing":
        message = "required field is missing"
    elif err["type"] == "extra_forbidden":
        message = "unknown field"
    line, col = smap.locate(path)
    return Problem(smap.file, format_path(path), message, line, col)
