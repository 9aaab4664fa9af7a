"""What changes between two methodology versions, in words an approver can check."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from points_rules._methodology import Methodology

__all__ = ["Change", "diff"]


@dataclass(frozen=True, slots=True)
class Change:
    """One difference: ``section`` (parameters, formula, caps, ...), the ``name`` of the item
    within it ("" for a top-level field), the ``field`` that differs, and both values (None
    where the item does not exist on that side)."""

    section: str
    name: str
    field: str
    before: Any
    after: Any

    def __str__(self) -> str:
        where = ".".join(part for part in (self.section, self.name, self.field) if part)
        if self.before is None:
            return f"+ {where}: {_show(self.after)}"
        if self.after is None:
            return f"- {where}: {_show(self.before)}"
        return f"~ {where}: {_show(self.before)} -> {_show(self.after)}"


def _show(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _plain(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(mode="python", exclude_none=False)
    return dumped


def _compare_items(
    section: str,
    before: Mapping[str, dict[str, Any]],
    after: Mapping[str, dict[str, Any]],
    out: list[Change],
) -> None:
    for name in [*before, *(n for n in after if n not in before)]:
        old, new = before.get(name), after.get(name)
        if old is None or new is None:
            # A whole item appears or goes: list each field, so sources are never hidden.
            side = new if old is None else old
            assert side is not None
            for field_name, value in side.items():
                if value is None:
                    continue
                out.append(
                    Change(
                        section,
                        name,
                        field_name,
                        None if old is None else value,
                        value if old is None else None,
                    )
                )
            continue
        for field_name in [*old, *(f for f in new if f not in old)]:
            if old.get(field_name) != new.get(field_name):
                out.append(
                    Change(section, name, field_name, old.get(field_name), new.get(field_name))
                )


_TOP_LEVEL = (
    "title",
    "scenario",
    "region",
    "timezone",
    "effective_from",
    "effective_to",
    "claim_window_days",
    "max_clock_skew_s",
    "result",
)


def diff(before: Methodology | None, after: Methodology) -> list[Change]:
    """Every difference from ``before`` (the version in force; None if there is none) to
    ``after``: parameters with their sources, inputs, plausibility and eligibility rules,
    formula steps, the points rule, caps and the claim window. Empty when only formatting or
    comments differ."""
    new = after.doc
    if before is None:
        old_items: dict[str, Any] = {}
        out: list[Change] = []
    else:
        old = before.doc
        out = [
            Change("", "", name, getattr(old, name), getattr(new, name))
            for name in _TOP_LEVEL
            if getattr(old, name) != getattr(new, name)
        ]
    sections: dict[str, tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]] = {}
    for label, getter in (
        ("parameters", lambda d: {k: _plain(v) for k, v in d.parameters.items()}),
        ("inputs", lambda d: {k: _plain(v) for k, v in d.inputs.items()}),
        ("plausibility", lambda d: {c.code: _plain(c) for c in d.plausibility}),
        ("eligibility", lambda d: {c.code: _plain(c) for c in d.eligibility}),
        ("formula", lambda d: {s.name: _plain(s) for s in d.formula}),
        ("points", lambda d: {"rule": _plain(d.points)}),
        ("caps", lambda d: {c.key: _plain(c) for c in d.caps}),
    ):
        old_items = getter(before.doc) if before is not None else {}
        sections[label] = (old_items, getter(new))
    if before is None:
        out.extend(
            Change("", "", name, None, getattr(new, name))
            for name in _TOP_LEVEL
            if getattr(new, name) is not None
        )
    for label, (old_map, new_map) in sections.items():
        _compare_items(label, old_map, new_map, out)
    if before is not None:
        old_order = [s.name for s in before.doc.formula]
        new_order = [s.name for s in new.formula]
        common_old = [n for n in old_order if n in new_order]
        common_new = [n for n in new_order if n in old_order]
        if common_old != common_new:
            out.append(Change("formula", "", "order", old_order, new_order))
    return out
