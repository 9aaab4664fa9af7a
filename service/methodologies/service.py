"""Methodology versions in PostgreSQL: filed from the shipped library, cached per process.

A version, once filed, never changes (a trigger refuses it); it may only have its
effective period closed, which is how a new version takes over at an exact time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources

from sqlalchemy.ext.asyncio import AsyncSession

from points_rules import Methodology, NoMethodologyError, Registry, parse_methodology
from service.errors import ConflictError
from service.methodologies import repository


class MethodologyChangedError(ConflictError):
    slug = "methodology-changed"
    title = "A filed methodology version cannot change"


def _row(m: Methodology, source: str) -> dict[str, object]:
    doc = m.doc
    return {
        "methodology_id": doc.id,
        "version": doc.version,
        "action_type": doc.action_type,
        "region": doc.region,
        "effective_from": m.effective_start,
        "effective_to": m.effective_end,
        "content_hash": m.content_hash,
        "source_yaml": source,
    }


async def file_methodology(
    session: AsyncSession, source_yaml: str, *, file: str = "<api>"
) -> Methodology:
    """File one version; refiling identical content is a no-op, different content a conflict."""
    methodology = parse_methodology(source_yaml, file)
    stored = await repository.file_version(session, _row(methodology, source_yaml))
    if stored != methodology.content_hash:
        raise MethodologyChangedError(
            f"{methodology.doc.id} v{methodology.doc.version} is filed with other content; "
            "file a new version instead"
        )
    return methodology


def library_sources() -> list[tuple[str, str]]:
    """(file name, YAML text) of every methodology shipped in `points_rules/library`."""
    folder = resources.files("points_rules") / "library"
    return sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )


async def sync_library(session: AsyncSession) -> int:
    """File every shipped methodology not yet filed; returns how many documents were checked."""
    sources = library_sources()
    for name, text in sources:
        await file_methodology(session, text, file=name)
    return len(sources)


@dataclass(slots=True)
class _Cached:
    registry: Registry
    fingerprint: repository.FiledFingerprint
    checked_at: float


class RegistryCache:
    """The registry of filed versions, rebuilt only when the filed set changes.

    Checking costs one cheap query at most every `ttl` seconds per process.
    """

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._cached: _Cached | None = None

    def invalidate(self) -> None:
        self._cached = None

    async def get(self, session: AsyncSession) -> Registry:
        now = time.monotonic()
        cached = self._cached
        if cached is not None and now - cached.checked_at < self.ttl:
            return cached.registry
        fingerprint = await repository.filed_fingerprint(session)
        if cached is not None and cached.fingerprint == fingerprint:
            cached.checked_at = now
            return cached.registry
        methodologies = []
        for row in await repository.all_version_rows(session):
            m = parse_methodology(row.source_yaml, f"{row.methodology_id}@v{row.version}")
            # The period lives in the row (the document stays as filed): an activation
            # scheduled at an exact instant, a closing.
            m.effective_start = row.effective_from
            m.effective_end = row.effective_to
            methodologies.append(m)
        registry = Registry([_with_shipped_translations(m) for m in methodologies])
        self._cached = _Cached(registry, fingerprint, now)
        return registry


@lru_cache(maxsize=1)
def _shipped_translations() -> dict[tuple[str, int, str], Methodology]:
    return {
        (m.id, m.version, m.content_hash): m
        for m in (parse_methodology(text, name) for name, text in library_sources())
        if m.doc.translations
    }


def _with_shipped_translations(m: Methodology) -> Methodology:
    """A filed library version with the translations the shipped file has now.

    Translations are not content (the hash leaves them out), so a version filed before its
    Chinese text was written, or before a translation was corrected, reads it from the
    library as long as its content is the library's.
    """
    shipped = _shipped_translations().get((m.id, m.version, m.content_hash))
    if shipped is None or shipped.doc.translations == m.doc.translations:
        return m
    m.doc = m.doc.model_copy(update={"translations": shipped.doc.translations})
    return m


def uncovered(registry: Registry, scopes: set[tuple[str, str | None]], at: datetime) -> list[str]:
    """`action_type@region` of each scope with no methodology in force at `at` (the region
    falls back to its parents and the default, as crediting does)."""
    missing = []
    for action_type, region in sorted(scopes, key=lambda s: (s[0], s[1] or "")):
        try:
            registry.select(action_type, at, region)
        except NoMethodologyError:
            missing.append(f"{action_type}@{region or '*'}")
    return missing
