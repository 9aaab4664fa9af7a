"""Two-phase holds, lots consumed and restored exactly, refunds, reversals and expiry."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from service.ledger import service as ledger
from service.ledger.errors import (
    AlreadyReversedError,
    HoldAlreadyResolvedError,
    HoldExpiredError,
    HoldNotFoundError,
    IdempotencyConflictError,
    InsufficientPointsError,
    InvalidAmountError,
    NothingToRefundError,
)
from service.ledger.jobs import run_expiry, run_hold_timeouts
from service.ledger.schemas import HoldResult, ResolutionResult, Status, TransferResult
from tests.ledger.conftest import NOW, Ledger

MERCHANT = uuid.UUID("00000000-0000-4000-8000-0000000000aa")


async def hold(
    env: Ledger, who: uuid.UUID, amount: int, key: str | None = None, minutes: int = 15
) -> HoldResult:
    return await env.run(
        lambda s: ledger.place_hold(
            s,
            origin="till",
            key=key or env.key("hold"),
            participant_id=who,
            merchant_id=MERCHANT,
            amount=amount,
            now=NOW,
            hold_for=timedelta(minutes=minutes),
        )
    )


async def post(
    env: Ledger, hold_id: int, amount: int, key: str | None = None, minutes: int = 1
) -> ResolutionResult:
    return await env.run(
        lambda s: ledger.post_hold(
            s,
            origin="till",
            key=key or env.key("post"),
            hold_id=hold_id,
            amount=amount,
            now=NOW + timedelta(minutes=minutes),
        )
    )


async def void(env: Ledger, hold_id: int, key: str | None = None) -> ResolutionResult:
    return await env.run(
        lambda s: ledger.void_hold(s, origin="till", key=key or env.key("void"), hold_id=hold_id)
    )


async def lot_remainders(env: Ledger, who: uuid.UUID) -> list[int]:
    rows = await env.run(
        lambda s: s.execute(
            text(
                "SELECT l.remaining FROM ledger_lots l"
                " JOIN ledger_accounts a ON a.id = l.account_id"
                " WHERE a.owner_id = :p ORDER BY l.expires_at, l.id"
            ),
            {"p": who},
        )
    )
    return [row[0] for row in rows]


async def test_fifty_concurrent_redemptions_of_100_against_1000(ledger_env: Ledger) -> None:
    alice = uuid.uuid4()
    await ledger_env.credit(alice, 1000)

    async def redeem(i: int) -> bool:
        try:
            placed = await hold(ledger_env, alice, 100, key=f"h{i}")
        except InsufficientPointsError:
            return False
        await post(ledger_env, placed.hold_id, 100, key=f"p{i}")
        return True

    outcomes = await asyncio.gather(*(redeem(i) for i in range(50)))
    assert sum(outcomes) == 10
    balance = await ledger_env.run(lambda s: ledger.balance(s, alice))
    assert (balance.posted, balance.held, balance.available) == (0, 0, 0)
    assert (await ledger_env.verify()).ok


async def test_a_capture_naming_another_participant_writes_and_locks_nothing(
    ledger_env: Ledger,
) -> None:
    alice, mallory = uuid.uuid4(), uuid.uuid4()
    await ledger_env.credit(alice, 500)
    placed = await hold(ledger_env, alice, 200)

    async def transactions() -> int:
        return int(
            await ledger_env.run(
                lambda s: s.scalar(text("SELECT count(*) FROM ledger_transactions"))
            )
        )

    before = await transactions()

    async def attempt(s: AsyncSession) -> str:
        # A caller that catches the refusal and commits: nothing may have been written.
        try:
            await ledger.post_hold(
                s,
                origin="till",
                key=ledger_env.key("post"),
                hold_id=placed.hold_id,
                amount=200,
                now=NOW + timedelta(minutes=1),
                participant_id=mallory,
            )
        except HoldNotFoundError:
            return "refused"
        return "captured"

    assert await ledger_env.run(attempt) == "refused"
    assert await transactions() == before
    captured = await post(ledger_env, placed.hold_id, 200)  # the right capture still works
    assert captured.status is Status.CREATED
    assert (await ledger_env.verify()).ok


async def test_hold_takes_soonest_expiring_lots_and_void_restores_exactly_them(
    ledger_env: Ledger,
) -> None:
    alice = uuid.uuid4()
    await ledger_env.credit(alice, 30, expires_at=NOW + timedelta(days=300))
    await ledger_env.credit(alice, 50, expires_at=NOW + timedelta(days=10))
    await ledger_env.credit(alice, 40, expires_at=NOW + timedelta(days=100))
    placed = await hold(ledger_env, alice, 70)
    assert await lot_remainders(ledger_env, alice) == [0, 20, 30]
    assert await ledger_env.available(alice) == 50
    await void(ledger_env, placed.hold_id)
    assert await lot_remainders(ledger_env, alice) == [50, 40, 30]
    assert await ledger_env.available(alice) == 120
    assert (await ledger_env.verify()).ok


async def test_partial_post_releases_the_rest_to_the_latest_expiring_lots(
    ledger_env: Ledger,
) -> None:
    alice = uuid.uuid4()
    await ledger_env.credit(alice, 50, expires_at=NOW + timedelta(days=10))
    await ledger_env.credit(alice, 40, expires_at=NOW + timedelta(days=100))
    placed = await hold(ledger_env, alice, 70)
    posted = await post(ledger_env, placed.hold_id, 60)
    assert posted.amount_posted == 60
    # 50 spent from the soonest lot, 10 from the next; 10 of the 20 held from it go back.
    assert await lot_remainders(ledger_env, alice) == [0, 30]
    balance = await ledger_env.run(lambda s: ledger.balance(s, alice))
    assert (balance.posted, balance.held, balance.available) == (30, 0, 30)
    assert (await ledger_env.verify()).ok


async def test_a_hold_resolves_exactly_once(ledger_env: Ledger) -> None:
    alice = uuid.uuid4()
    await ledger_env.credit(alice, 100)
    placed = await hold(ledger_env, alice, 40)
    first = await void(ledger_env, placed.hold_id, key="v1")
    assert first.status is Status.CREATED
    retried = await void(ledger_env, placed.hold_id, key="v1")
    assert retried.status is Status.EXISTS
    with pytest.raises(HoldAlreadyResolvedError):
        await void(ledger_env, placed.hold_id, key="v2")  # double void
    with pytest.raises(HoldAlreadyResolvedError):
        await post(ledger_env, placed.hold_id, 40)  # post after void
    second = await hold(ledger_env, alice, 30)
    await post(ledger_env, second.hold_id, 30, key="p1")
    assert (await post(ledger_env, second.hold_id, 30, key="p1")).status is Status.EXISTS
    with pytest.raises(HoldAlreadyResolvedError):
        await post(ledger_env, second.hold_id, 30, key="p2")  # double post
    with pytest.raises(HoldAlreadyResolvedError):
        await void(ledger_env, second.hold_id)  # void after post
    assert await ledger_env.available(alice) == 70
    assert (await ledger_env.verify()).ok


async def test_concurrent_post_and_void_only_one_wins(ledger_env: Ledger) -> None:
    alice = uuid.uuid4()
    await ledger_env.credit(alice, 100)
    for round_ in range(5):
        placed = await hold(ledger_env, alice, 10)
        results = await asyncio.gather(
            post(ledger_env, placed.hold_id, 10),
            void(ledger_env, placed.hold_id),
            post(ledger_env, placed.hold_id, 10),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, ResolutionResult)]
        assert len(winners) == 1, (round_, results)
        assert all(isinstance(r, HoldAlreadyResolvedError) for r in results if r not in winners)
    assert (await ledger_env.verify()).ok


async def test_hold_idempotency_and_bad_amounts(ledger_env: Ledger) -> None:
    alice = uuid.uuid4()
    await ledger_env.credit(alice, 100)
    first = await hold(ledger_env, alice, 40, key="h")
    assert (await hold(ledger_env, alice, 40, key="h")).hold_id == first.hold_id
    with pytest.raises(IdempotencyConflictError) as conflict:
        await hold(ledger_env, alice, 41, key="h")
    assert conflict.value.extensions["fields"] == ["amount"]
    with pytest.raises(InvalidAmountError):
        await post(ledger_env, first.hold_id, 41)
    with pytest.raises(InvalidAmountError):
        await hold(ledger_env, alice, 0)
    with pytest.raises(InsufficientPointsError):
        await hold(ledger_env, alice, 61)
    assert await ledger_env.available(alice) == 60


async def test_forgotten_holds_time_out(ledger_env: Ledger) -> None:
    alice = uuid.uuid4()
    await ledger_env.credit(alice, 100)
    placed = await hold(ledger_env, alice, 40, minutes=15)
    with pytest.raises(HoldExpiredError):
        await post(ledger_env, placed.hold_id, 40, minutes=16)
    assert await run_hold_timeouts(ledger_env.sessionmaker, now=NOW + timedelta(minutes=14)) == 0
    assert await run_hold_timeouts(ledger_env.sessionmaker, now=NOW + timedelta(minutes=16)) == 1
    assert await ledger_env.available(alice) == 100
    with pytest.raises(HoldAlreadyResolvedError):
        await post(ledger_env, placed.hold_id, 40)
    assert (await ledger_env.verify()).ok


async def test_refund_restores_exactly_the_lots_the_redemption_took(ledger_env: Ledger) -> None:
    alice = uuid.uuid4()
    await ledger_env.credit(alice, 50, expires_at=NOW + timedelta(days=10))
    await ledger_env.credit(alice, 50, expires_at=NOW + timedelta(days=100))
    await ledger_env.credit(alice, 50, expires_at=NOW + timedelta(days=200))
    placed = await hold(ledger_env, alice, 80)
    posted = await post(ledger_env, placed.hold_id, 80)
    assert posted.transaction_id is not None
    redemption = posted.transaction_id
    assert await lot_remainders(ledger_env, alice) == [0, 20, 50]

    async def refund(amount: int, key: str) -> object:
        return await ledger_env.run(
            lambda s: ledger.refund(
                s, origin="till", key=key, redemption_id=redemption, amount=amount
            )
        )

    await refund(20, "r1")
    assert await lot_remainders(ledger_env, alice) == [0, 40, 50]
    await refund(60, "r2")
    assert await lot_remainders(ledger_env, alice) == [50, 50, 50]
    with pytest.raises(NothingToRefundError):
        await refund(1, "r3")  # buy, earn, refund, keep: not here
    assert await ledger_env.available(alice) == 150
    assert (await ledger_env.verify()).ok


async def test_reversal_claws_back_and_records_debt_for_what_was_spent(
    ledger_env: Ledger,
) -> None:
    alice = uuid.uuid4()
    credited = await ledger_env.credit(alice, 100, grams=100)
    assert credited.transaction_id is not None
    placed = await hold(ledger_env, alice, 70)
    await post(ledger_env, placed.hold_id, 70)

    async def reverse(key: str) -> object:
        return await ledger_env.run(
            lambda s: ledger.reverse_credit(
                s,
                origin="partner",
                key=key,
                credit_id=credited.transaction_id or 0,
                reason="partner_retraction",
            )
        )

    reversal = await reverse("retract-1")
    balance = await ledger_env.run(lambda s: ledger.balance(s, alice))
    assert (balance.available, balance.debt, balance.grams) == (0, 70, 0)
    assert getattr(reversal, "unrecovered", None) == 70
    with pytest.raises(AlreadyReversedError):
        await reverse("retract-2")
    assert (await ledger_env.verify()).ok

    paid = await ledger_env.credit(alice, 50)
    assert paid.debt_paid == 50
    later = await ledger_env.credit(alice, 50)
    assert later.debt_paid == 20
    balance = await ledger_env.run(lambda s: ledger.balance(s, alice))
    assert (balance.available, balance.debt) == (30, 0)
    assert (await ledger_env.verify()).ok


async def test_expiry_is_batched_idempotent_and_refills_expire_again(
    ledger_env: Ledger,
) -> None:
    people = [uuid.uuid4() for _ in range(7)]
    for person in people:
        await ledger_env.credit(person, 10, expires_at=NOW + timedelta(days=1))
        await ledger_env.credit(person, 5, expires_at=NOW + timedelta(days=30))
    later = NOW + timedelta(days=2)
    assert await run_expiry(ledger_env.sessionmaker, now=later, batch_size=3) == 7
    assert await run_expiry(ledger_env.sessionmaker, now=later, batch_size=3) == 0
    assert [await ledger_env.available(p) for p in people] == [5] * 7
    expired = await ledger_env.run(
        lambda s: s.scalar(
            text("SELECT posted FROM ledger_accounts WHERE code = 'program:expiry:POINTS'")
        )
    )
    assert expired == 70
    assert (await ledger_env.verify()).ok


async def reverse(env: Ledger, credit_id: int | None, key: str = "retract") -> TransferResult:
    assert credit_id is not None
    return await env.run(
        lambda s: ledger.reverse_credit(
            s, origin="partner", key=key, credit_id=credit_id, reason="fraud_review"
        )
    )


async def test_reversal_after_expiry_takes_back_from_the_expiry_account(
    ledger_env: Ledger,
) -> None:
    alice = uuid.uuid4()
    short = await ledger_env.credit(alice, 100, expires_at=NOW + timedelta(days=1))
    await ledger_env.credit(alice, 100)
    await run_expiry(ledger_env.sessionmaker, now=NOW + timedelta(days=2))
    result = await reverse(ledger_env, short.transaction_id)
    assert (result.amount, result.unrecovered) == (0, 0)
    balance = await ledger_env.run(lambda s: ledger.balance(s, alice))
    assert (balance.available, balance.debt) == (100, 0)
    assert (await ledger_env.verify()).ok


async def test_points_released_to_someone_in_debt_pay_the_debt_first(
    ledger_env: Ledger,
) -> None:
    alice = uuid.uuid4()
    credited = await ledger_env.credit(alice, 100)
    placed = await hold(ledger_env, alice, 100)
    reversal = await reverse(ledger_env, credited.transaction_id)
    assert (reversal.amount, reversal.unrecovered) == (0, 100)
    await void(ledger_env, placed.hold_id)
    balance = await ledger_env.run(lambda s: ledger.balance(s, alice))
    assert (balance.available, balance.held, balance.debt) == (0, 0, 0)
    assert (await ledger_env.verify()).ok


async def test_a_refund_to_someone_in_debt_pays_the_debt_first(ledger_env: Ledger) -> None:
    alice = uuid.uuid4()
    credited = await ledger_env.credit(alice, 100)
    placed = await hold(ledger_env, alice, 70)
    posted = await post(ledger_env, placed.hold_id, 70)
    await reverse(ledger_env, credited.transaction_id)
    assert posted.transaction_id is not None
    redemption = posted.transaction_id
    await ledger_env.run(
        lambda s: ledger.refund(s, origin="till", key="r", redemption_id=redemption, amount=70)
    )
    balance = await ledger_env.run(lambda s: ledger.balance(s, alice))
    assert (balance.available, balance.debt) == (0, 0)
    assert (await ledger_env.verify()).ok


async def test_a_reversal_retry_returns_the_original_figures(ledger_env: Ledger) -> None:
    alice = uuid.uuid4()
    credited = await ledger_env.credit(alice, 100)
    placed = await hold(ledger_env, alice, 60)
    await post(ledger_env, placed.hold_id, 60)
    first = await reverse(ledger_env, credited.transaction_id, key="once")
    again = await reverse(ledger_env, credited.transaction_id, key="once")
    assert (first.amount, first.unrecovered) == (40, 60)
    assert (again.status, again.amount, again.unrecovered) == (Status.EXISTS, 40, 60)


async def test_concurrent_voids_with_one_key_all_see_one_result(ledger_env: Ledger) -> None:
    alice = uuid.uuid4()
    await ledger_env.credit(alice, 100)
    placed = await hold(ledger_env, alice, 50)
    results = await asyncio.gather(
        *(void(ledger_env, placed.hold_id, key="same") for _ in range(8))
    )
    assert sorted(r.status for r in results) == [Status.CREATED] + [Status.EXISTS] * 7
    assert await ledger_env.available(alice) == 100


async def test_hold_timeouts_skip_holds_resolved_meanwhile(ledger_env: Ledger) -> None:
    alice = uuid.uuid4()
    await ledger_env.credit(alice, 100)
    placed = [await hold(ledger_env, alice, 10) for _ in range(3)]
    await void(ledger_env, placed[1].hold_id)
    later = NOW + timedelta(hours=1)
    outcomes = await asyncio.gather(
        run_hold_timeouts(ledger_env.sessionmaker, now=later),
        run_hold_timeouts(ledger_env.sessionmaker, now=later),
    )
    assert sum(outcomes) == 2
    assert await ledger_env.available(alice) == 100
    assert (await ledger_env.verify()).ok
