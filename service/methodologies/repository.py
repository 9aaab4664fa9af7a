"""All SQL on `methodology_versions` and `methodology_drafts` (the back-test reads stored
credits and events through `service.crediting.service`). Typed returns: the mapped rows, or
the small records below."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import delete, extract, func, literal, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import MethodologyDraft, MethodologyVersion


async def version(
    session: AsyncSession, methodology_id: str, number: int, *, for_update: bool = False
) -> MethodologyVersion | None:
    query = select(MethodologyVersion).where(
        MethodologyVersion.methodology_id == methodology_id, MethodologyVersion.version == number
    )
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def versions_in_scope(
    session: AsyncSession, action_type: str, region: str | None, *, for_update: bool = False
) -> Sequence[MethodologyVersion]:
    """Every filed version of one action type and region (exactly), oldest first; locked
    when scheduling, so two activations in one scope cannot interleave."""
    query = (
        select(MethodologyVersion)
        .where(
            MethodologyVersion.action_type == action_type,
            MethodologyVersion.region.is_not_distinct_from(region),
        )
        .order_by(MethodologyVersion.effective_from)
    )
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalars().all()


async def all_version_rows(session: AsyncSession) -> Sequence[MethodologyVersion]:
    """Every filed version, in no particular order (the registry's build)."""
    return (await session.execute(select(MethodologyVersion))).scalars().all()


async def all_versions(session: AsyncSession) -> Sequence[MethodologyVersion]:
    """Every filed version, by scope (action type, region) and start."""
    query = select(MethodologyVersion).order_by(*_VERSION_SORT)
    return (await session.execute(query)).scalars().all()


class VersionKey(NamedTuple):
    """Where a page of filed versions ends: the listing's sort key of its last row."""

    action_type: str
    region: str  # '' for the default region (NULL sorts as '')
    effective_from: datetime
    methodology_id: str
    version: int

    @classmethod
    def of(cls, row: MethodologyVersion) -> VersionKey:
        return cls(
            row.action_type, row.region or "", row.effective_from, row.methodology_id, row.version
        )


_VERSION_SORT = (
    MethodologyVersion.action_type,
    func.coalesce(MethodologyVersion.region, ""),
    MethodologyVersion.effective_from,
    MethodologyVersion.methodology_id,
    MethodologyVersion.version,
)


async def versions_page(
    session: AsyncSession, *, after: VersionKey | None, limit: int
) -> Sequence[MethodologyVersion]:
    """At most `limit` filed versions in listing order, after `after` (keyset: the page is
    found by the sort key, never by skipping rows)."""
    query = select(MethodologyVersion).order_by(*_VERSION_SORT).limit(limit)
    if after is not None:
        query = query.where(tuple_(*_VERSION_SORT) > tuple_(*(literal(v) for v in after)))
    return (await session.execute(query)).scalars().all()


async def version_in_force(
    session: AsyncSession, action_type: str, region: str | None, at: datetime
) -> MethodologyVersion | None:
    """The filed version of exactly this action type and region whose period holds `at`."""
    return await session.scalar(
        select(MethodologyVersion).where(
            MethodologyVersion.action_type == action_type,
            MethodologyVersion.region.is_not_distinct_from(region),
            MethodologyVersion.effective_from <= at,
            or_(MethodologyVersion.effective_to.is_(None), MethodologyVersion.effective_to > at),
        )
    )


async def file_version(session: AsyncSession, row: dict[str, object]) -> str | None:
    """File a version unless its (id, version) is filed already; the content hash filed
    under that id and version afterwards (this one's, or the earlier one's)."""
    await session.execute(
        insert(MethodologyVersion)
        .values(row)
        .on_conflict_do_nothing(index_elements=["methodology_id", "version"])
    )
    return await session.scalar(
        select(MethodologyVersion.content_hash).where(
            MethodologyVersion.methodology_id == row["methodology_id"],
            MethodologyVersion.version == row["version"],
        )
    )


class FiledFingerprint(NamedTuple):
    """Changes whenever a version is filed or unfiled, or a period is closed or reopened."""

    filed: int
    last_filed: datetime | None
    closed: int
    closings: Decimal | None  # the sum of the closing instants (epoch seconds)


async def filed_fingerprint(session: AsyncSession) -> FiledFingerprint:
    row = (
        await session.execute(
            select(
                func.count(),
                func.max(MethodologyVersion.filed_at),
                func.count(MethodologyVersion.effective_to),
                func.sum(extract("epoch", MethodologyVersion.effective_to)),
            )
        )
    ).one()
    closings = Decimal(row[3]) if row[3] is not None else None
    return FiledFingerprint(int(row[0]), row[1], int(row[2]), closings)


async def close_period(
    session: AsyncSession, methodology_id: str, number: int, at: datetime
) -> None:
    await session.execute(
        update(MethodologyVersion)
        .where(
            MethodologyVersion.methodology_id == methodology_id,
            MethodologyVersion.version == number,
        )
        .values(effective_to=at)
    )


async def reopen_period(session: AsyncSession, methodology_id: str, number: int) -> None:
    """Withdraw a closing still to come (the guard refuses it once the instant has passed)."""
    await session.execute(
        update(MethodologyVersion)
        .where(
            MethodologyVersion.methodology_id == methodology_id,
            MethodologyVersion.version == number,
        )
        .values(effective_to=None)
    )


async def remove_version(session: AsyncSession, methodology_id: str, number: int) -> None:
    """Unfile a version whose period has not begun (the guard refuses it otherwise)."""
    await session.execute(
        delete(MethodologyVersion).where(
            MethodologyVersion.methodology_id == methodology_id,
            MethodologyVersion.version == number,
        )
    )


async def insert_version(session: AsyncSession, row: dict[str, object]) -> None:
    await session.execute(insert(MethodologyVersion).values(row))


async def draft(
    session: AsyncSession, draft_id: int, *, for_update: bool = False
) -> MethodologyDraft | None:
    query = select(MethodologyDraft).where(MethodologyDraft.id == draft_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def draft_exists(session: AsyncSession, methodology_id: str, number: int) -> bool:
    found = await session.scalar(
        select(MethodologyDraft.id).where(
            MethodologyDraft.methodology_id == methodology_id, MethodologyDraft.version == number
        )
    )
    return found is not None


async def add_draft(session: AsyncSession, draft: MethodologyDraft) -> MethodologyDraft:
    session.add(draft)
    await session.flush()
    await session.refresh(draft)
    return draft


async def drafts_page(
    session: AsyncSession, *, before: int | None, limit: int
) -> Sequence[MethodologyDraft]:
    """At most `limit` drafts, newest first, older than draft `before` (keyset on the id)."""
    query = select(MethodologyDraft).order_by(MethodologyDraft.id.desc()).limit(limit)
    if before is not None:
        query = query.where(MethodologyDraft.id < before)
    return (await session.execute(query)).scalars().all()


async def save_draft(session: AsyncSession, draft: MethodologyDraft) -> None:
    await session.flush()
    await session.refresh(draft)
