"""A set of methodology versions: consistency checks and selection of the version in force."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from points_rules._errors import (
    InvalidActionError,
    MethodologyError,
    NoMethodologyError,
    Problem,
)
from points_rules._evaluate import Action, Outcome, Usage, evaluate
from points_rules._methodology import Methodology, load_library

__all__ = ["Registry", "default_registry"]


def _overlaps(a: Methodology, b: Methodology) -> bool:
    a_end, b_end = a.effective_end, b.effective_end
    return (b_end is None or a.effective_start < b_end) and (
        a_end is None or b.effective_start < a_end
    )


def _period(m: Methodology) -> str:
    end = m.doc.effective_to.isoformat() if m.doc.effective_to else "open"
    return f"{m.doc.effective_from.isoformat()}..{end}"


class Registry:
    """Methodology versions indexed by (action type, region).

    Rejects two versions of the same action type and region whose effective periods overlap,
    the same (id, version) twice with different content, and caps sharing a key but not their
    period or group. ``select`` picks the version in force at ``occurred_at``, falling back from
    a region (``CN-HB-WH``) to its parents (``CN-HB``) and then to the default (no region).
    """

    __slots__ = ("_by_id", "_by_scope")

    def __init__(self, methodologies: Iterable[Methodology]) -> None:
        items = list(methodologies)
        problems: list[Problem] = []
        by_id: dict[tuple[str, int], Methodology] = {}
        by_scope: dict[tuple[str, str | None], list[Methodology]] = {}
        for m in items:
            known = by_id.get((m.id, m.version))
            if known is not None:
                if known.content_hash != m.content_hash:
                    problems.append(
                        Problem(
                            m.file,
                            "version",
                            f"{m.id} v{m.version} is also "
                            f"defined in {known.file} with different content",
                        )
                    )
                continue
            by_id[(m.id, m.version)] = m
            by_scope.setdefault((m.action_type, m.region), []).append(m)
        for (action_type, region), versions in by_scope.items():
            versions.sort(key=lambda m: m.effective_start)
            for i, a in enumerate(versions):
                for b in versions[i + 1 :]:
                    if _overlaps(a, b):
                        problems.append(
                            Problem(
                                b.file,
                                "effective_from",
                                f"{b.id} v{b.version} ({_period(b)}) overlaps {a.id} v{a.version} "
                                f"({_period(a)}) in {a.file} for {action_type} in "
                                f"{region or 'the default region'}",
                            )
                        )
        caps: dict[str, tuple[Methodology, str, tuple[str, ...]]] = {}
        for m in by_id.values():
            for cap in m.caps:
                seen = caps.get(cap.key)
                if seen is None:
                    caps[cap.key] = (m, cap.period, tuple(sorted(cap.group)))
                elif (seen[1], seen[2]) != (cap.period, tuple(sorted(cap.group))):
                    problems.append(
                        Problem(
                            m.file,
                            "caps",
                            f"cap {cap.key!r} differs in period "
                            f"or group from the one in {seen[0].file}",
                        )
                    )
        if problems:
            raise MethodologyError(problems)
        self._by_id = by_id
        self._by_scope = by_scope

    @property
    def methodologies(self) -> tuple[Methodology, ...]:
        """All versions, ordered by action type, region and effective date."""
        return tuple(
            sorted(
                self._by_id.values(),
                key=lambda m: (m.action_type, m.region or "", m.effective_start),
            )
        )

    def get(self, methodology_id: str, version: int) -> Methodology:
        """The methodology with this id and version (e.g. to recompute a stored credit)."""
        try:
            return self._by_id[(methodology_id, version)]
        except KeyError:
            raise NoMethodologyError(f"no methodology {methodology_id} v{version}") from None

    def select(
        self, action_type: str, occurred_at: dt.datetime, region: str | None = None
    ) -> Methodology:
        """The version in force at ``occurred_at`` for the action type, trying the region, its
        parent regions, then the default; raise NoMethodologyError when none is."""
        if occurred_at.tzinfo is None:
            raise InvalidActionError("occurred_at must be timezone-aware")
        scope = region
        while True:
            for m in self._by_scope.get((action_type, scope), ()):
                if m.in_force(occurred_at):
                    return m
            if scope is None:
                break
            scope = scope.rsplit("-", 1)[0] if "-" in scope else None
        raise NoMethodologyError(
            f"no methodology for {action_type} in {region or 'the default region'} "
            f"at {occurred_at.isoformat()}"
        )

    def evaluate(self, action: Action, usage_so_far: Mapping[str, Usage] | None = None) -> Outcome:
        """Select the version in force for the action and evaluate it."""
        m = self.select(action.action_type, action.occurred_at, action.region)
        return evaluate(m, action, usage_so_far or {})


def default_registry() -> Registry:
    """A registry of the shipped default library."""
    return Registry(load_library())
