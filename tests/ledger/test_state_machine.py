"""A simulator in TigerBeetle's spirit: random operation sequences against real PostgreSQL.

A plain-Python model of the ledger's rules (FIFO lots by expiry, holds resolved
once, refunds and voids restoring exactly the lots taken, reversals clawing back
and leaving debt, expiry) runs beside the real ledger. After every step the
lots, balances, holds and debts must match the model, and `verify_ledger` must
find nothing: invariants 1-3 and 7 on every reachable state.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service import migrations
from service.config import Settings
from service.db import create_engine, create_sessionmaker
from service.ledger import service as ledger
from service.ledger.errors import (
    HoldAlreadyResolvedError,
    HoldExpiredError,
    InsufficientPointsError,
    NothingToRefundError,
)
from service.ledger.jobs import run_expiry, run_hold_timeouts
from service.ledger.schemas import CreditRequest, Status
from service.ledger.verify import verify_ledger
from tests.conftest import drop_database, recreate_database

T = TypeVar("T")
START = datetime(2026, 1, 1, tzinfo=UTC)
HOLD_FOR = timedelta(hours=12)


@dataclass
class ModelLot:
    seq: int
    expires_at: datetime
    remaining: int
    expired: int = 0


@dataclass
class ModelHold:
    hold_id: int
    who: int
    amount: int
    expires_at: datetime
    taken: dict[int, int]  # lot seq -> points
    resolved: bool = False


@dataclass
class ModelPerson:
    pid: uuid.UUID
    lots: list[ModelLot] = field(default_factory=list)
    held: int = 0
    debt: int = 0
    grams: int = 0


class Harness:
    """Owns an event loop and an engine of its own: Hypothesis drives it synchronously."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.engine: AsyncEngine = create_engine(url, pool_size=2)
        self.sessionmaker: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def tx(self, work: Any) -> Any:
        async with self.sessionmaker() as session, session.begin():
            return await work(session)

    def close(self) -> None:
        self.run(self.engine.dispose())
        self.loop.close()


class LedgerMachine(RuleBasedStateMachine):
    harness: Harness
    credits = Bundle("credits")
    holds = Bundle("holds")
    redemptions = Bundle("redemptions")

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.people: list[ModelPerson] = []
        self.lot_seq: dict[int, int] = {}  # db lot id -> model seq
        self.next_seq = 0
        self.keys = 0
        self.merchant = uuid.uuid4()
        self.credit_owner: dict[int, tuple[int, int | None, int, int]] = {}
        self.redemption_info: dict[int, tuple[int, dict[int, int]]] = {}

    def key(self) -> str:
        self.keys += 1
        return f"sm-{uuid.uuid4().hex[:8]}-{self.keys}"

    @initialize()
    def make_people(self) -> None:
        self.people = [ModelPerson(uuid.uuid4()) for _ in range(3)]

    # --- operations ---------------------------------------------------------------------

    @rule(
        target=credits,
        who=st.integers(0, 2),
        points=st.integers(1, 200),
        grams=st.integers(0, 200),
        days=st.integers(1, 60),
    )
    def credit(self, who: int, points: int, grams: int, days: int) -> int:
        person = self.people[who]
        expires = self.now + timedelta(days=days)
        request = CreditRequest("sim", self.key(), person.pid, points, grams, expires)
        (result,) = self.harness.run(
            self.harness.tx(lambda s: ledger.credit(s, [request], now=self.now))
        )
        assert result.status is Status.CREATED
        paid = min(person.debt, points)
        assert result.debt_paid == paid
        person.debt -= paid
        person.grams += grams
        seq = None
        if points - paid:
            seq = self._open_lot(person, result.lot_id, expires, points - paid)
        assert result.transaction_id is not None
        self.credit_owner[result.transaction_id] = (who, seq, points, grams)
        return result.transaction_id

    def _open_lot(self, person: ModelPerson, lot_id: int | None, expires: datetime, n: int) -> int:
        assert lot_id is not None
        self.next_seq += 1
        self.lot_seq[lot_id] = self.next_seq
        person.lots.append(ModelLot(self.next_seq, expires, n))
        return self.next_seq

    @rule(target=holds, who=st.integers(0, 2), amount=st.integers(1, 300))
    def hold(self, who: int, amount: int) -> int:
        person = self.people[who]
        spendable = sorted(
            (lot for lot in person.lots if lot.remaining and lot.expires_at > self.now),
            key=lambda lot: (lot.expires_at, lot.seq),
        )
        try:
            placed = self.harness.run(
                self.harness.tx(
                    lambda s: ledger.place_hold(
                        s,
                        origin="sim",
                        key=self.key(),
                        participant_id=person.pid,
                        merchant_id=self.merchant,
                        amount=amount,
                        now=self.now,
                        hold_for=HOLD_FOR,
                    )
                )
            )
        except InsufficientPointsError:
            assert sum(lot.remaining for lot in spendable) < amount
            return -1
        taken: dict[int, int] = {}
        left = amount
        for lot in spendable:
            take = min(lot.remaining, left)
            if take:
                lot.remaining -= take
                taken[lot.seq] = take
                left -= take
        assert left == 0, "the ledger placed a hold the model says cannot be covered"
        person.held += amount
        self._holds[placed.hold_id] = ModelHold(
            placed.hold_id, who, amount, self.now + HOLD_FOR, taken
        )
        return int(placed.hold_id)

    @property
    def _holds(self) -> dict[int, ModelHold]:
        if not hasattr(self, "_hold_map"):
            self._hold_map: dict[int, ModelHold] = {}
        return self._hold_map

    def _give_back(self, person: ModelPerson, taken: dict[int, int], amount: int) -> None:
        """Return `amount` to the lots in `taken`, latest-expiring first; debt is paid first."""
        by_seq = {lot.seq: lot for lot in person.lots}
        order = sorted(taken, key=lambda s: (by_seq[s].expires_at, s), reverse=True)
        given: list[tuple[ModelLot, int]] = []
        left = amount
        for seq in order:
            if left == 0:
                break
            give = min(taken[seq], left)
            by_seq[seq].remaining += give
            taken[seq] -= give
            left -= give
            if give:
                given.append((by_seq[seq], give))
        assert left == 0
        pay = min(person.debt, amount)
        person.debt -= pay
        for lot, give in given:
            take = min(give, lot.remaining, pay)
            lot.remaining -= take
            pay -= take

    @rule(target=redemptions, hold_id=consumes(holds), fraction=st.integers(1, 4))
    def post(self, hold_id: int, fraction: int) -> int:
        model = self._holds.get(hold_id)
        if model is None:
            return -1
        amount = max(1, model.amount * fraction // 4)
        try:
            result = self.harness.run(
                self.harness.tx(
                    lambda s: ledger.post_hold(
                        s,
                        origin="sim",
                        key=self.key(),
                        hold_id=hold_id,
                        amount=amount,
                        now=self.now,
                    )
                )
            )
        except HoldAlreadyResolvedError:
            assert model.resolved
            return -1
        except HoldExpiredError:
            assert not model.resolved and self.now >= model.expires_at
            return -1
        assert not model.resolved and self.now < model.expires_at
        model.resolved = True
        person = self.people[model.who]
        person.held -= model.amount
        self._give_back(person, model.taken, model.amount - amount)
        self.redemption_info[result.transaction_id] = (model.who, model.taken)
        return int(result.transaction_id)

    @rule(hold_id=holds)
    def void(self, hold_id: int) -> None:
        model = self._holds.get(hold_id)
        if model is None:
            return
        try:
            self.harness.run(
                self.harness.tx(
                    lambda s: ledger.void_hold(s, origin="sim", key=self.key(), hold_id=hold_id)
                )
            )
        except HoldAlreadyResolvedError:
            assert model.resolved
            return
        assert not model.resolved
        self._resolve_void(model)

    def _resolve_void(self, model: ModelHold) -> None:
        model.resolved = True
        person = self.people[model.who]
        person.held -= model.amount
        self._give_back(person, model.taken, model.amount)

    @rule(redemption=redemptions, amount=st.integers(1, 150))
    def refund(self, redemption: int, amount: int) -> None:
        if redemption not in self.redemption_info:
            return
        who, taken = self.redemption_info[redemption]
        refundable = sum(taken.values())
        try:
            self.harness.run(
                self.harness.tx(
                    lambda s: ledger.refund(
                        s, origin="sim", key=self.key(), redemption_id=redemption, amount=amount
                    )
                )
            )
        except NothingToRefundError:
            assert amount > refundable
            return
        assert amount <= refundable
        self._give_back(self.people[who], taken, amount)

    @rule(credit_id=consumes(credits))
    def reverse(self, credit_id: int) -> None:
        who, seq, points, grams = self.credit_owner[credit_id]
        person = self.people[who]
        result = self.harness.run(
            self.harness.tx(
                lambda s: ledger.reverse_credit(
                    s, origin="sim", key=self.key(), credit_id=credit_id, reason="simulated"
                )
            )
        )
        open_lots = sorted(
            (lot for lot in person.lots if lot.remaining),
            key=lambda lot: (lot.seq != seq, lot.expires_at, lot.seq),
        )
        own = next((lot for lot in person.lots if lot.seq == seq), None)
        expired = own.expired if own else 0
        left = points - expired
        for lot in open_lots:
            take = min(lot.remaining, left)
            lot.remaining -= take
            left -= take
        person.debt += left
        person.grams -= grams
        assert result.unrecovered == left

    @rule(days=st.integers(1, 20))
    def advance_and_run_jobs(self, days: int) -> None:
        self.now += timedelta(days=days)
        self.harness.run(run_hold_timeouts(self.harness.sessionmaker, now=self.now))
        for model in self._holds.values():
            if not model.resolved and model.expires_at <= self.now:
                self._resolve_void(model)
        self.harness.run(run_expiry(self.harness.sessionmaker, now=self.now, batch_size=4))
        for person in self.people:
            for lot in person.lots:
                if lot.expires_at <= self.now:
                    lot.expired += lot.remaining
                    lot.remaining = 0

    # --- checks -------------------------------------------------------------------------

    @invariant()
    def matches_model_and_verifies(self) -> None:
        if not self.people:
            return
        for person in self.people:
            balance = self.harness.run(
                self.harness.tx(lambda s, p=person.pid: ledger.balance(s, p))
            )
            lots = sum(lot.remaining for lot in person.lots)
            assert (balance.available, balance.held, balance.debt, balance.grams) == (
                lots,
                person.held,
                person.debt,
                person.grams,
            )
            rows = self.harness.run(
                self.harness.tx(
                    lambda s, p=person.pid: s.execute(
                        text(
                            "SELECT l.id, l.remaining FROM ledger_lots l JOIN ledger_accounts a"
                            " ON a.id = l.account_id WHERE a.owner_id = :p ORDER BY l.id"
                        ),
                        {"p": p},
                    )
                )
            )
            actual = {self.lot_seq[lot_id]: remaining for lot_id, remaining in rows}
            assert actual == {lot.seq: lot.remaining for lot in person.lots}
        report = self.harness.run(verify_ledger(self.harness.engine))
        assert report.ok, [str(v) for v in report.violations]


@pytest.mark.slow
def test_ledger_state_machine(test_settings: Settings, server_url: str) -> None:
    name = f"carbon_points_simulator_{uuid.uuid4().hex[:8]}"
    url = asyncio.run(recreate_database(server_url, name))
    migrations.upgrade(url)
    harness = Harness(url)
    LedgerMachine.harness = harness
    try:
        LedgerMachine.TestCase.settings = settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        LedgerMachine.TestCase().runTest()
    finally:
        harness.close()
        asyncio.run(drop_database(server_url, name))
