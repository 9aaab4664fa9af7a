"""The app's reads, and the participant's own part of export and erasure. Each takes the
session first and touches only the caller's own data; the SQL is in `repository`."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from points_rules import Action, NoMethodologyError, Registry, Usage, explain
from service import redis as redis_keys
from service.crediting import reads as crediting_reads
from service.crediting.schemas import OutcomeOut, ReasonOut, engine_inputs
from service.db import Reader
from service.errors import NotFoundError
from service.i18n import EN, N_, _, translate
from service.i18n.methodologies import localise_reason, render_explanation
from service.ledger import service as ledger
from service.observability import get_logger
from service.participants import repository as repo
from service.participants.repository import (
    ParticipantFilter,
    ParticipantLabel,
    ParticipantRecord,
    TokenUseRecord,
)
from service.participants.schemas import (
    BalanceOut,
    ExpiringPoints,
    Explanation,
    HistoryItem,
    HistoryPage,
    Leaderboard,
    LeaderboardEntry,
    ReductionRow,
    ReviewOut,
)
from service.privacy import PrivacyTables
from service.redis import RedisClient
from service.review import service as review

_log = get_logger("carbon_points.participants")
ERASED_NAME = "erased participant"
LEADERBOARD_SECONDS = 60
LEADERBOARD_SIZE = 100  # ranks a leaderboard shows, pages included


class CreditNotFoundError(NotFoundError):
    slug = "credit-not-found"
    title = "Credit not found"


async def balance(
    source: AsyncSession | Reader, participant_id: uuid.UUID, tz: ZoneInfo | None = None
) -> BalanceOut:
    """Available, on hold, owed, pending, grams, and what expires when (in `tz`, the
    programme's time zone, when given: the same instants, read as local times)."""
    current = await ledger.balance(source, participant_id)
    return BalanceOut(
        available=current.available,
        on_hold=current.held,
        debt=current.debt,
        pending_events=await crediting_reads.pending_events(source, participant_id),
        grams_co2e=current.grams,
        expiring=[
            ExpiringPoints(expires_at=at if tz is None else at.astimezone(tz), points=n)
            for at, n in current.expiring
        ],
    )


async def reductions(
    session: AsyncSession,
    participant_id: uuid.UUID,
    tz: str,
    *,
    offset: int = 0,
    limit: int | None = None,
) -> list[ReductionRow]:
    """Grams of CO2e (and points) by month and action type, retractions excluded, newest
    month first; `limit` rows from `offset` (all when `limit` is None)."""
    return [
        ReductionRow(
            month=r.month,
            action_type=r.action_type,
            grams=r.grams,
            points=r.points,
            credits=r.credits,
        )
        for r in await crediting_reads.reductions(
            session, participant_id, tz, offset=offset, limit=limit
        )
    ]


async def history(
    source: AsyncSession | Reader,
    participant_id: uuid.UUID,
    *,
    cursor: str | None,
    limit: int,
    kinds: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    language: str = EN,
    tz: ZoneInfo | None = None,
) -> HistoryPage:
    """Every movement of the participant's points, newest first, a page at a time; each
    item's `reason_text` in `language`, its time in `tz` (the programme's) when given."""
    rows = await ledger.history(
        source,
        participant_id,
        before_seq=int(cursor) if cursor else None,
        limit=limit,
        kinds=kinds,
        since=since,
        until=until,
    )
    items = []
    for seq, amount, kind, request, created_at, reverses_credit_id in rows:
        items.append(
            HistoryItem(
                sequence=seq,
                kind=kind,
                points=amount,
                at=created_at if tz is None else created_at.astimezone(tz),
                credit_id=request.get("credit_id"),
                methodology_id=request.get("methodology_id"),
                methodology_version=request.get("methodology_version"),
                reason=request.get("reason"),
                reverses_credit_id=reverses_credit_id,
                reason_text=(
                    translate(review.HELD_FOR_REVIEW, language)
                    if kind == "credit" and request.get("review")
                    else history_reason(kind, request.get("reason"), language)
                ),
            )
        )
    next_cursor = str(items[-1].sequence) if len(items) == limit else None
    return HistoryPage(items=items, next_cursor=next_cursor)


# What a history item's reason code means to its reader. Reversals carry the partner's own
# code (free text); the known ones read as sentences, the others are quoted.
_HISTORY_REASONS: Final = {
    "action_credited": N_("a low-carbon action was credited"),
    "partner_correction": N_("the partner corrected its report"),
}


def history_reason(kind: str, reason: object, language: str) -> str | None:
    """A history item's reason as a sentence in `language`; None when it has no reason."""
    if not isinstance(reason, str) or not reason:
        return None
    known = _HISTORY_REASONS.get(reason)
    if known is not None:
        return translate(known, language)
    if kind == "reversal" and reason.startswith("review:"):
        # A reviewer rejected the credit: the reviewer's reason, in the reader's language.
        return review.rejection_text(reason.removeprefix("review:"), language)
    if kind == "reversal":
        return translate(_("taken back by the partner: %(reason)s", reason=reason), language)
    return reason


async def explain_credit(
    session: AsyncSession,
    registry: Registry,
    participant_id: uuid.UUID,
    credit_id: int,
    language: str = EN,
    tz: ZoneInfo | None = None,
) -> Explanation:
    """Regenerate a credit's full trace from its methodology version and stored inputs, its
    words (title, description, rules, reasons, labels) in `language` and its times in `tz`
    (the programme's) when given: the same instants, so the same outcome."""
    found = await crediting_reads.credit_for(session, participant_id, credit_id)
    if found is None:
        # The same answer for "does not exist" and "is someone else's".
        raise CreditNotFoundError(_("no credit %(credit_id)s on this account", credit_id=credit_id))
    credit, event_status = found
    methodology = registry.get(credit.methodology_id, credit.methodology_version)
    action = Action(
        action_type=credit.action_type,
        occurred_at=credit.occurred_at if tz is None else credit.occurred_at.astimezone(tz),
        received_at=credit.received_at if tz is None else credit.received_at.astimezone(tz),
        inputs=engine_inputs(credit.inputs),
        region=credit.region,
    )
    trace = explain(
        methodology, action, {k: Usage(g, p) for k, (g, p) in credit.usage_before.items()}
    )
    body, text = render_explanation(trace, methodology, language)
    checked = await review.credit_review(session, credit.event_id, language)
    return Explanation(
        credit_id=str(credit.event_id),
        status="retracted" if event_status == "retracted" else credit.status,
        review=None
        if checked is None
        else ReviewOut(status=checked.status, reason=checked.reason, text=checked.text),
        grams=credit.grams,
        points=credit.points,
        trace=body,
        text=text,
    )


def localise_outcome(outcome: OutcomeOut, registry: Registry, language: str) -> OutcomeOut:
    """An outcome shown in the app, its reasons in `language`: a rule's from its methodology's
    translation, a constant engine reason from the catalogue (a stored outcome keeps only the
    English text of a reason with numbers in it, which stays English)."""
    if language == EN or not outcome.reasons:
        return outcome
    methodology = None
    if outcome.methodology_id is not None and outcome.methodology_version is not None:
        with contextlib.suppress(NoMethodologyError):
            methodology = registry.get(outcome.methodology_id, outcome.methodology_version)
    reasons = [
        ReasonOut(
            code=r.code,
            message=localise_reason(r.code, r.message, language, methodology=methodology),
        )
        for r in outcome.reasons
    ]
    return outcome.model_copy(update={"reasons": reasons})


def period_window(period: str, now: datetime, tz: str) -> tuple[datetime, datetime, str]:
    """This week (ISO, from Monday) or month, in the program's time zone."""
    local = now.astimezone(ZoneInfo(tz))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        iso = start.isocalendar()
        return start, start + timedelta(days=7), f"{iso.year}-W{iso.week:02d}"
    start = day.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end, start.strftime("%Y-%m")


async def leaderboard(
    session: AsyncSession,
    redis: RedisClient,
    *,
    scope: str,
    key: str,
    participant_filter: ParticipantFilter,
    period: str,
    now: datetime,
    tz: str,
    offset: int = 0,
    limit: int = 20,
) -> Leaderboard:
    """The top `LEADERBOARD_SIZE` participants by grams, `limit` of them from `offset`; a
    Redis sorted set rebuilt from PostgreSQL when missing.

    The sorted set lives a minute; losing Redis only means every read rebuilds it.
    """
    board = await _top(
        session,
        redis,
        scope=scope,
        key=key,
        participant_filter=participant_filter,
        period=period,
        now=now,
        tz=tz,
    )
    page = board.entries[offset : offset + limit]
    more = offset + limit < len(board.entries)
    return board.model_copy(
        update={"entries": page, "next_cursor": str(offset + limit) if more else None}
    )


async def _top(
    session: AsyncSession,
    redis: RedisClient,
    *,
    scope: str,
    key: str,
    participant_filter: ParticipantFilter,
    period: str,
    now: datetime,
    tz: str,
) -> Leaderboard:
    limit = LEADERBOARD_SIZE
    start, end, label = period_window(period, now, tz)
    # One hash tag for the board and its names: the MULTI below writes both (one slot).
    redis_key = redis_keys.key(f"leaderboard:{scope}:{key}:{label}")
    names_key = redis_keys.key(f"leaderboard:{scope}:{key}:{label}", "names")
    entries: list[LeaderboardEntry] | None = None
    try:
        raw: Any = await redis.zrevrange(redis_key, 0, limit - 1, withscores=True)
        cached: list[tuple[bytes, float]] = [(m, float(s)) for m, s in raw]
        if cached:
            names = await redis.hmget(names_key, [member for member, _ in cached])
            entries = [
                LeaderboardEntry(
                    rank=i + 1,
                    participant_id=_text(member),
                    display_name=_text(name or b""),
                    grams=int(score),
                )
                for i, ((member, score), name) in enumerate(zip(cached, names, strict=True))
            ]
    except Exception as exc:
        _log.warning("leaderboard cache unavailable", error=type(exc).__name__)
    if entries is None:
        rows = await repo.top_by_grams(session, participant_filter, start, end, limit)
        entries = [
            LeaderboardEntry(
                rank=i + 1,
                participant_id=str(row.participant_id),
                display_name=row.display_name,
                grams=row.grams,
            )
            for i, row in enumerate(rows)
        ]
        if entries:
            try:
                pipe = redis.pipeline(transaction=True)
                pipe.delete(redis_key, names_key)
                pipe.zadd(redis_key, {e.participant_id: e.grams for e in entries})
                pipe.hset(names_key, mapping={e.participant_id: e.display_name for e in entries})
                pipe.expire(redis_key, LEADERBOARD_SECONDS)
                pipe.expire(names_key, LEADERBOARD_SECONDS)
                await pipe.execute()
            except Exception as exc:
                _log.warning("leaderboard cache unavailable", error=type(exc).__name__)
    return Leaderboard(scope=scope, key=key, period=label, starts=start, entries=entries)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def organisation_filter(organisation_id: uuid.UUID) -> ParticipantFilter:
    """Participants who are members (users) of the organisation, and the organisation itself."""
    return repo.organisation_filter(organisation_id)


def region_filter(region: str) -> ParticipantFilter:
    return repo.region_filter(region)


# --- the participant's own part of export and erasure (see `privacy`) ------------------------

# The row of `participants` stays, renamed, as the ledger's pseudonym; the record of which
# partner link tokens were used stays, so that none can be used twice.
PRIVACY_TABLES: Final = PrivacyTables(
    exported={
        "participants": "participant",
        "partner_token_uses": "link_tokens_used",
    },
    erased=frozenset({"participants"}),
)


@dataclass(frozen=True, slots=True)
class ParticipantExport:
    participant: ParticipantRecord
    link_tokens_used: list[TokenUseRecord]


async def export_participant(
    session: AsyncSession, participant_id: uuid.UUID
) -> ParticipantExport | None:
    """The participant and the link tokens used; None for an unknown participant (identity
    links are crediting's: `service.crediting.privacy`)."""
    participant = await repo.participant_record(session, participant_id)
    if participant is None:
        return None
    return ParticipantExport(
        participant=participant,
        link_tokens_used=await repo.token_use_records(session, participant_id),
    )


async def erase_participant(
    session: AsyncSession, participant_id: uuid.UUID, now: datetime
) -> None:
    """Overwrite the name and region (the row's lock is the erasure's first; crediting then
    deletes the identity links, so that nothing connects the participant id to a person)."""
    await repo.erase_participant(session, participant_id, ERASED_NAME, now)


async def create_participant(
    session: AsyncSession,
    participant_id: uuid.UUID,
    *,
    kind: str,
    display_name: str,
    region: str | None,
) -> None:
    """A new participant (a citizen's or a business's points account), in the caller's
    transaction."""
    await repo.insert_participant(
        session, participant_id, kind=kind, display_name=display_name, region=region
    )


async def participant_labels(
    session: AsyncSession, participant_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, ParticipantLabel]:
    """Each participant's display name and region, by id. One statement."""
    return await repo.labels(session, participant_ids)


async def ensure_participants(
    session: AsyncSession, participants: Sequence[tuple[uuid.UUID, str, str, str]]
) -> None:
    """(id, kind, display name, region) participants with fixed ids, created if missing (the
    demo's: seeding twice changes nothing). `kind`: a `ParticipantKind` value."""
    await repo.insert_missing_participants(
        session,
        [
            {"id": pid, "kind": kind, "display_name": name, "region": region}
            for pid, kind, name, region in participants
        ],
    )
