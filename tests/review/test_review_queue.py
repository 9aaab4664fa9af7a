"""Flagged credits end to end: flagged as credited, points held, decided by reviewers."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from service.crediting import service as crediting
from service.crediting.flags import FlagRulesCache
from service.crediting.schemas import EventIn
from service.ledger import service as ledger
from service.ledger.errors import InsufficientPointsError
from service.ledger.verify import verify_ledger
from service.models import AdminAuditEntry, LedgerHold, LedgerTransaction, ReviewFlag
from service.participants import service as participants
from service.partners.auth import PartnerContext
from service.partners.credentials import IssuedCredential
from service.review import service as review
from service.review.errors import AlreadyDecidedError
from service.review.rules import (
    FlagRules,
    IdentityChurnParams,
    OverlapParams,
    PartnerVolumeParams,
    TravelParams,
    VelocityParams,
)
from tests.admin.conftest import SignedIn
from tests.crediting.conftest import TRIP_AT, Live, metro
from tests.crediting.test_set_based import _partner, _riders, counting
from tests.review.conftest import actor

ALL_RULES = FlagRules(
    velocity=VelocityParams(max_trips=2),
    overlap=OverlapParams(),
    travel=TravelParams(),
    identity_churn=IdentityChurnParams(),
    partner_volume=PartnerVolumeParams(),
)


def trips(prefix: str, card: str, minutes: list[int], **changes: Any) -> list[EventIn]:
    return [
        EventIn.model_validate(
            metro(
                f"{prefix}-{i}",
                card=card,
                occurred_at=TRIP_AT + timedelta(minutes=m),
                quantities={"distance_m": 3000, "duration_s": 300},
                **changes,
            ).to_json()
        )
        for i, m in enumerate(minutes)
    ]


async def send(
    live: Live, partner: PartnerContext, events: list[EventIn], rules: FlagRules
) -> list[crediting.OutcomeOut]:
    settings = dataclasses.replace(live.settings(), flags=rules)
    async with live.sessionmaker() as session:
        registry = await live.app.state.registry_cache.get(session)
    async with live.sessionmaker() as session, session.begin():
        return await crediting.ingest(
            session, registry, settings, partner, list(events), datetime.now(UTC)
        )


async def rider(live: Live, credential: IssuedCredential, card: str) -> uuid.UUID:
    await _riders(live, credential.partner_id, [card])
    async with live.sessionmaker() as session:
        found = await session.scalar(
            text("SELECT participant_id FROM identity_links ORDER BY id DESC LIMIT 1")
        )
    assert found is not None
    return uuid.UUID(str(found))


async def flags(live: Live) -> dict[int, ReviewFlag]:
    async with live.sessionmaker() as session:
        rows = await session.scalars(select(ReviewFlag))
        return {r.event_id: r for r in rows}


async def assert_ledger_whole(live: Live) -> None:
    report = await verify_ledger(live.sessionmaker.kw["bind"])
    assert report.ok, str(report)


async def test_velocity_flags_holds_the_points_and_nothing_else(live: Live) -> None:
    credential, partner = await _partner(live, "metro-co")
    pid = await rider(live, credential, "6222000000000001")
    outcomes = await send(
        live,
        partner,
        trips("v", "6222000000000001", [0, 10, 20]),
        FlagRules(velocity=VelocityParams(max_trips=2)),
    )
    assert [o.status for o in outcomes] == ["credited"] * 3
    found = await flags(live)
    third = int(outcomes[2].credit_id or 0)
    assert set(found) == {third}
    assert found[third].rules == ["velocity"]
    assert found[third].status == "open"
    assert found[third].details[0]["trips"] == 3
    async with live.sessionmaker() as session:
        balance = await ledger.balance(session, pid)
        assert balance.held == outcomes[2].points > 0
        assert balance.available == outcomes[0].points + outcomes[1].points
        assert balance.posted == sum(o.points for o in outcomes)
    await assert_ledger_whole(live)


async def test_with_every_rule_off_nothing_is_flagged(live: Live) -> None:
    credential, partner = await _partner(live, "metro-co")
    await rider(live, credential, "6222000000000002")
    outcomes = await send(
        live, partner, trips("off", "6222000000000002", [0, 1, 2, 3]), FlagRules()
    )
    assert {o.status for o in outcomes} == {"credited"}
    assert await flags(live) == {}


async def test_overlap_and_travel_are_flagged_from_stored_trips(live: Live) -> None:
    credential, partner = await _partner(live, "metro-co")
    await rider(live, credential, "6222000000000003")
    rules = FlagRules(overlap=OverlapParams(), travel=TravelParams())
    first = await send(live, partner, trips("a", "6222000000000003", [0], region="CN-JX"), rules)
    # 2 minutes later, still inside the first 5-minute trip; then another region 20 minutes on.
    overlapping = await send(
        live, partner, trips("b", "6222000000000003", [2], region="CN-JX"), rules
    )
    elsewhere = await send(
        live, partner, trips("c", "6222000000000003", [20], region="CN-HB"), rules
    )
    fine = await send(live, partner, trips("d", "6222000000000003", [200], region="CN-JX"), rules)
    found = await flags(live)
    assert set(found) == {int(overlapping[0].credit_id or 0), int(elsewhere[0].credit_id or 0)}
    assert found[int(overlapping[0].credit_id or 0)].rules == ["overlap"]
    assert (
        found[int(overlapping[0].credit_id or 0)].details[0]["other_credit_id"]
        == first[0].credit_id
    )
    assert found[int(elsewhere[0].credit_id or 0)].rules == ["travel"]
    assert int(fine[0].credit_id or 0) not in found


async def test_a_card_linked_across_many_participants_is_flagged(live: Live) -> None:
    credential, partner = await _partner(live, "metro-co")
    card = "6222000000000004"
    # Three participants had the card in turn: two unlinked, the third holds it now.
    for _ in range(2):
        await rider(live, credential, card)
        async with live.sessionmaker() as session, session.begin():
            await session.execute(
                text("UPDATE identity_links SET unlinked_at = now() WHERE unlinked_at IS NULL")
            )
    await rider(live, credential, card)
    rules = FlagRules(identity_churn=IdentityChurnParams(max_participants=2))
    outcomes = await send(live, partner, trips("x", card, [0]), rules)
    found = await flags(live)
    assert found[int(outcomes[0].credit_id or 0)].details[0]["participants"] == 3
    # A card that stayed with one person is not.
    await rider(live, credential, "6222000000000005")
    calm = await send(live, partner, trips("y", "6222000000000005", [0]), rules)
    assert int(calm[0].credit_id or 0) not in await flags(live)


async def test_a_partner_far_above_its_usual_volume_is_flagged(
    live: Live, reviewers: tuple[SignedIn, SignedIn]
) -> None:
    reviewer_one = actor(reviewers[0])
    credential, partner = await _partner(live, "metro-co")
    quiet_credential, quiet = await _partner(live, "bus-co")
    cards = [f"62220000001{i:05d}" for i in range(30)]
    await _riders(live, credential.partner_id, cards)
    await send(live, partner, [e for c in cards for e in trips(f"s{c}", c, [0])], FlagRules())
    async with live.sessionmaker() as session:
        rules = await FlagRulesCache().refresh(session)  # every rule off: no surge looked for
        assert rules.surges == {}
    async with live.sessionmaker() as session, session.begin():
        await review.set_rule(
            session,
            reviewer_one,
            "partner_volume",
            enabled=True,
            params={"min_events_per_hour": 20, "multiplier_percent": 200},
        )
    async with live.sessionmaker() as session:
        rules = await FlagRulesCache().refresh(session, now=datetime.now(UTC))
    assert set(rules.surges) == {credential.partner_id}
    assert rules.surges[credential.partner_id].events_last_hour == 30
    await rider(live, quiet_credential, "6222000000000007")
    surging = await send(live, partner, trips("t", cards[1], [60]), rules)
    calm = await send(live, quiet, trips("u", "6222000000000007", [60]), rules)
    found = await flags(live)
    assert found[int(surging[0].credit_id or 0)].rules == ["partner_volume"]
    assert int(calm[0].credit_id or 0) not in found


async def test_held_points_cannot_be_spent(
    live: Live, reviewers: tuple[SignedIn, SignedIn]
) -> None:
    reviewer_one = actor(reviewers[0])
    credential, partner = await _partner(live, "metro-co")
    pid = await rider(live, credential, "6222000000000008")
    outcomes = await send(
        live,
        partner,
        trips("h", "6222000000000008", [0, 10]),
        FlagRules(velocity=VelocityParams(max_trips=1)),
    )
    assert outcomes[0].points > 0 and outcomes[1].points > 0
    args: dict[str, Any] = {
        "origin": "test",
        "participant_id": pid,
        "merchant_id": uuid.uuid4(),
        "now": datetime.now(UTC),
        "hold_for": timedelta(minutes=5),
    }
    async with live.sessionmaker() as session, session.begin():
        with pytest.raises(InsufficientPointsError):
            await ledger.place_hold(session, key="all", amount=outcomes[0].points + 1, **args)
    async with live.sessionmaker() as session, session.begin():
        spent = await ledger.place_hold(session, key="free", amount=outcomes[0].points, **args)
        assert spent.amount == outcomes[0].points
    # Approved: the held points can be spent now.
    async with live.sessionmaker() as session, session.begin():
        await review.approve(session, reviewer_one, int(outcomes[1].credit_id or 0))
    async with live.sessionmaker() as session, session.begin():
        later = await ledger.place_hold(session, key="later", amount=outcomes[1].points, **args)
        assert later.amount == outcomes[1].points
    await assert_ledger_whole(live)


async def _flagged_credit(live: Live, card: str) -> tuple[uuid.UUID, crediting.OutcomeOut]:
    credential, partner = await _partner(live, f"metro-{card[-4:]}")
    pid = await rider(live, credential, card)
    outcomes = await send(
        live, partner, trips("r", card, [0, 10]), FlagRules(velocity=VelocityParams(max_trips=1))
    )
    return pid, outcomes[1]


async def test_reject_reverses_once_and_tells_the_participant_why(
    live: Live, reviewers: tuple[SignedIn, SignedIn]
) -> None:
    reviewer_one, reviewer_two = actor(reviewers[0]), actor(reviewers[1])
    pid, flagged = await _flagged_credit(live, "6222000000000009")
    credit_id = int(flagged.credit_id or 0)
    async with live.sessionmaker() as session:
        before = await ledger.balance(session, pid)
    async with live.sessionmaker() as session, session.begin():
        decided = await review.reject(
            session, reviewer_one, credit_id, reason="implausible_trips", note="farmed"
        )
        assert decided.status == "rejected"
    async with live.sessionmaker() as session, session.begin():
        with pytest.raises(AlreadyDecidedError):
            await review.reject(session, reviewer_two, credit_id, reason="partner_error")
    async with live.sessionmaker() as session:
        after = await ledger.balance(session, pid)
        assert after.held == 0
        assert after.posted == before.posted - flagged.points
        assert after.available == before.available
        reversals = await session.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.kind == "reversal")
        )
        assert reversals == 1
        page = await participants.history(session, pid, cursor=None, limit=10, language="zh-CN")
        english = await participants.history(session, pid, cursor=None, limit=10, language="en")
        entries = await session.scalars(
            select(AdminAuditEntry.action).where(AdminAuditEntry.target_id == str(credit_id))
        )
        assert list(entries) == ["review.reject"]
        registry = await live.app.state.registry_cache.get(session)
        explained = await participants.explain_credit(session, registry, pid, credit_id, "en")
        explained_zh = await participants.explain_credit(session, registry, pid, credit_id, "zh-CN")
    reversal = next(i for i in english.items if i.kind == "reversal")
    assert reversal.reverses_credit_id == str(credit_id)
    assert reversal.reason_text == (
        "taken back after review: the trips reported are more than one person can make"
    )
    reversal_zh = next(i for i in page.items if i.kind == "reversal")
    assert reversal_zh.reason_text and reversal_zh.reason_text != reversal.reason_text
    assert "审" in reversal_zh.reason_text
    credit_item = next(i for i in english.items if i.credit_id == str(credit_id))
    assert credit_item.reason_text and "held" in credit_item.reason_text
    assert explained.review is not None and explained.review.status == "rejected"
    assert explained.review.text == reversal.reason_text
    assert explained_zh.review is not None and explained_zh.review.text == reversal_zh.reason_text
    await assert_ledger_whole(live)


async def test_two_reviewers_deciding_at_once_one_decision_wins(
    live: Live, reviewers: tuple[SignedIn, SignedIn]
) -> None:
    reviewer_one, reviewer_two = actor(reviewers[0]), actor(reviewers[1])
    for attempt in range(3):
        pid, flagged = await _flagged_credit(live, f"622200000001{attempt:04d}")
        credit_id = int(flagged.credit_id or 0)

        async def decide(kind: str, credit_id: int = credit_id) -> str:
            try:
                async with live.sessionmaker() as session, session.begin():
                    if kind == "approve":
                        await review.approve(session, reviewer_one, credit_id)
                    else:
                        await review.reject(
                            session, reviewer_two, credit_id, reason="partner_error"
                        )
                return kind
            except AlreadyDecidedError:
                return "lost"

        results = await asyncio.gather(decide("approve"), decide("reject"), decide("reject"))
        assert sorted(results).count("lost") == 2, results
        winner = next(r for r in results if r != "lost")
        async with live.sessionmaker() as session:
            flag = await session.get(ReviewFlag, credit_id)
            assert flag is not None
            assert flag.status == ("approved" if winner == "approve" else "rejected")
            balance = await ledger.balance(session, pid)
            assert balance.held == 0
            reversals = await session.scalar(
                select(func.count())
                .select_from(LedgerTransaction)
                .where(
                    LedgerTransaction.kind == "reversal",
                    LedgerTransaction.request["reverses"].astext == str(flagged_transaction(flag)),
                )
            )
            assert reversals == (1 if winner == "reject" else 0)
            actions = list(
                await session.scalars(
                    select(AdminAuditEntry.action).where(
                        AdminAuditEntry.target_id == str(credit_id)
                    )
                )
            )
            assert actions == [f"review.{winner}"]
    await assert_ledger_whole(live)


def flagged_transaction(flag: ReviewFlag) -> int:
    return flag.transaction_id


async def test_a_flagged_event_sent_again_is_credited_and_held_once(live: Live) -> None:
    credential, partner = await _partner(live, "metro-co")
    await rider(live, credential, "6222000000000011")
    rules = FlagRules(velocity=VelocityParams(max_trips=1))
    events = trips("once", "6222000000000011", [0, 10])
    first = await send(live, partner, events, rules)
    again = await asyncio.gather(*(send(live, partner, events, rules) for _ in range(3)))
    for outcomes in again:
        assert [o.credit_id for o in outcomes] == [o.credit_id for o in first]
    async with live.sessionmaker() as session:
        holds = await session.scalar(
            select(func.count())
            .select_from(LedgerHold)
            .where(LedgerHold.idempotency_key.like("review:%"))
        )
    assert holds == 1
    assert len(await flags(live)) == 1
    await assert_ledger_whole(live)


async def test_flagging_adds_no_statement_that_grows_with_the_batch(live: Live) -> None:
    credential, partner = await _partner(live, "metro-co")
    cards = [f"62229{i:011d}" for i in range(200)]
    await _riders(live, credential.partner_id, cards)
    engine = live.sessionmaker.kw["bind"]
    rules = dataclasses.replace(ALL_RULES, velocity=VelocityParams(max_trips=1))

    async def count(prefix: str, chosen: list[str], with_rules: FlagRules) -> tuple[list[str], int]:
        events = [e for c in chosen for e in trips(f"{prefix}{c}", c, [0, 10])]
        with counting(engine) as statements:
            outcomes = await send(live, partner, events, with_rules)
        return statements, sum(1 for o in outcomes if o.status == "credited")

    off_small, _ = await count("a", cards[:2], FlagRules())
    small, credited_small = await count("b", cards[2:4], rules)
    large, credited_large = await count("c", cards[4:200], rules)
    assert credited_small == 4 and credited_large == 392
    assert len(await flags(live)) == 2 + 196  # every second trip of each rider
    assert len(small) == len(large), (small, large)
    # Flags cost at most two statements more than no rules: the flags' insert, nothing else
    # (the rules' reads ride on the statements crediting makes anyway).
    assert len(large) <= len(off_small) + 1, (off_small, large)


async def test_a_retracted_flagged_credit_is_taken_back_once_and_approval_releases_nothing(
    live: Live, reviewers: tuple[SignedIn, SignedIn]
) -> None:
    credential, partner = await _partner(live, "metro-co")
    pid = await rider(live, credential, "6222000000000012")
    outcomes = await send(
        live,
        partner,
        trips("rt", "6222000000000012", [0, 10]),
        FlagRules(velocity=VelocityParams(max_trips=1)),
    )
    first_points = outcomes[0].points
    async with live.sessionmaker() as session, session.begin():
        registry = await live.app.state.registry_cache.get(session)
        await crediting.retract(session, registry, partner, "rt-1", "partner_correction")
    async with live.sessionmaker() as session:
        balance = await ledger.balance(session, pid)
    assert (balance.available, balance.held, balance.debt) == (first_points, 0, 0)
    async with live.sessionmaker() as session, session.begin():
        decided = await review.approve(
            session, actor(reviewers[0]), int(outcomes[1].credit_id or 0)
        )
        assert decided.status == "approved"
    async with live.sessionmaker() as session:
        after = await ledger.balance(session, pid)
    assert (after.available, after.held, after.debt) == (first_points, 0, 0)
    await assert_ledger_whole(live)
