"""Credits, TigerBeetle-style idempotency, and the database's own guards."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.ledger import service as ledger
from service.ledger.errors import InvalidAmountError
from service.ledger.schemas import CreditRequest, Status
from tests.ledger.conftest import NOW, Ledger


async def test_credit_opens_a_lot_and_moves_points_and_grams(ledger_env: Ledger) -> None:
    alice = uuid.uuid4()
    result = await ledger_env.credit(alice, 120, grams=120)
    assert result.status is Status.CREATED
    balance = await ledger_env.run(lambda s: ledger.balance(s, alice))
    assert (balance.posted, balance.available, balance.grams) == (120, 120, 120)
    assert balance.expiring == [(NOW + timedelta(days=730), 120)]
    report = await ledger_env.verify()
    assert report.ok, report.violations
    assert report.transactions == 1
    assert report.postings == 4


async def test_same_key_same_content_returns_the_original(ledger_env: Ledger) -> None:
    alice = uuid.uuid4()
    first = await ledger_env.credit(alice, 50, key="trip-1")
    again = await ledger_env.credit(alice, 50, key="trip-1")
    assert again.status is Status.EXISTS
    assert again.transaction_id == first.transaction_id
    assert await ledger_env.available(alice) == 50


async def test_same_key_different_content_is_a_conflict_naming_the_field(
    ledger_env: Ledger,
) -> None:
    alice = uuid.uuid4()
    await ledger_env.credit(alice, 50, key="trip-1")
    clash = await ledger_env.credit(alice, 60, key="trip-1")
    assert clash.status is Status.CONFLICT
    assert clash.conflicting_fields == ("points",)
    assert await ledger_env.available(alice) == 50


async def test_a_batch_reports_each_item_and_dedupes_within_itself(ledger_env: Ledger) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    expires = NOW + timedelta(days=30)

    def req(key: str, who: uuid.UUID, points: int) -> CreditRequest:
        return CreditRequest("test", key, who, points, points, expires)

    await ledger_env.credit(alice, 10, key="a", expires_at=expires, grams=10)
    results = await ledger_env.run(
        lambda s: ledger.credit(
            s,
            [
                req("a", alice, 10),
                req("b", bob, 20),
                req("b", bob, 20),
                req("c", bob, 5),
                req("c", bob, 6),
            ],
            now=NOW,
        )
    )
    assert [r.status for r in results] == [
        Status.EXISTS,
        Status.CREATED,
        Status.EXISTS,
        Status.CREATED,
        Status.CONFLICT,
    ]
    assert results[1].transaction_id == results[2].transaction_id
    assert await ledger_env.available(bob) == 25
    assert (await ledger_env.verify()).ok


async def test_one_hundred_concurrent_submissions_of_one_key_make_one_transaction(
    ledger_env: Ledger,
) -> None:
    alice = uuid.uuid4()
    results = await asyncio.gather(*(ledger_env.credit(alice, 7, key="burst") for _ in range(100)))
    created = [r for r in results if r.status is Status.CREATED]
    assert len(created) == 1
    assert {r.transaction_id for r in results} == {created[0].transaction_id}
    assert await ledger_env.available(alice) == 7
    count = await ledger_env.run(
        lambda s: s.scalar(text("SELECT count(*) FROM ledger_transactions"))
    )
    assert count == 1


async def test_concurrent_batches_with_overlapping_keys_do_not_deadlock(
    ledger_env: Ledger,
) -> None:
    people = [uuid.uuid4() for _ in range(20)]
    expires = NOW + timedelta(days=30)
    batch = [CreditRequest("test", f"k{i}", p, 3, 0, expires) for i, p in enumerate(people)]

    async def submit(order: list[CreditRequest]) -> None:
        await ledger_env.run(lambda s: ledger.credit(s, order, now=NOW))

    await asyncio.gather(*(submit(batch[::1] if i % 2 else batch[::-1]) for i in range(8)))
    assert [await ledger_env.available(p) for p in people] == [3] * 20
    assert (await ledger_env.verify()).ok


@pytest.mark.parametrize(
    ("points", "grams"), [(-1, 0), (0, 0), (5, -1), (10.5, 0), (True, 0), (5, 2.0)]
)
async def test_bad_amounts_are_refused(ledger_env: Ledger, points: Any, grams: Any) -> None:
    with pytest.raises(InvalidAmountError):
        await ledger_env.credit(uuid.uuid4(), points, grams=grams)
    assert (await ledger_env.verify()).transactions == 0


@pytest.mark.parametrize(
    "expires_at", [NOW - timedelta(seconds=1), NOW, NOW + timedelta(days=3654)]
)
async def test_expiry_must_be_ahead_and_within_ten_years(
    ledger_env: Ledger, expires_at: datetime
) -> None:
    with pytest.raises(InvalidAmountError):
        await ledger_env.credit(uuid.uuid4(), 5, expires_at=expires_at)


async def test_a_retry_returns_the_original_lot_and_debt_paid(ledger_env: Ledger) -> None:
    alice = uuid.uuid4()
    first = await ledger_env.credit(alice, 30, key="same")
    again = await ledger_env.credit(alice, 30, key="same")
    assert (again.transaction_id, again.lot_id, again.debt_paid) == (
        first.transaction_id,
        first.lot_id,
        0,
    )


async def test_database_refuses_an_unbalanced_transaction(ledger_env: Ledger) -> None:
    async def forge() -> None:
        async with ledger_env.sessionmaker() as session, session.begin():
            tx = await session.scalar(
                text(
                    "INSERT INTO ledger_transactions (origin, idempotency_key, kind, request) "
                    "VALUES ('forger', 'x', 'credit', '{}') RETURNING id"
                )
            )
            await session.execute(
                text(
                    "INSERT INTO ledger_postings "
                    "(transaction_id, account_id, asset, amount, account_seq, chain_hash) "
                    "VALUES (:tx, 1, 'POINTS', -5, 1, '\\x00'), (:tx, 2, 'POINTS', 4, 1, '\\x00')"
                ),
                {"tx": tx},
            )

    with pytest.raises(DBAPIError, match="does not sum to zero"):
        await forge()


async def test_database_refuses_a_negative_available_balance(ledger_env: Ledger) -> None:
    alice = uuid.uuid4()
    await ledger_env.credit(alice, 10)
    with pytest.raises(DBAPIError, match="available_non_negative"):
        await ledger_env.run(
            lambda s: s.execute(
                text(
                    "UPDATE ledger_accounts SET held = 11 WHERE owner_id = :p AND asset = 'POINTS'"
                ),
                {"p": alice},
            )
        )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_transactions SET request = '{}'",
        "DELETE FROM ledger_postings",
        "UPDATE ledger_lot_movements SET amount = 1",
        "TRUNCATE ledger_transactions CASCADE",
    ],
)
async def test_ledger_rows_are_append_only(ledger_env: Ledger, statement: str) -> None:
    await ledger_env.credit(uuid.uuid4(), 10)
    with pytest.raises(DBAPIError, match="append-only"):
        await ledger_env.run(lambda s: s.execute(text(statement)))
