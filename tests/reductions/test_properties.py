"""Property test: random sequences of credits, reversals, pooling runs, transfers (splits) and
retirements against real PostgreSQL, beside a plain-Python model of the rules. After every
step `verify_reductions` finds nothing, and the grams, batches and blocks match the model:

* a run pools every standing unpooled credit; it issues the whole kilograms of the pool's
  position plus what it pooled (a shortfall made good first), or is refused with nothing
  written (nothing eligible; below the minimum);
* a reversal of a pooled credit takes its grams from the pool, never the participant;
* live blocks cover every issued serial once; a block is retired once, by its holder, and
  never after it was split or transferred away.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.errors import ProblemError
from service.ledger.verify import verify_ledger
from service.methodologies.service import sync_library
from service.models import GRAMS_PER_SERIAL
from service.reductions import service as reductions
from service.reductions.errors import (
    BlockAlreadyRetiredError,
    BlockNotHeldError,
    NothingToPoolError,
    PoolBelowMinimumError,
)
from tests.conftest import empty_all_tables
from tests.reductions.conftest import ACTOR, Programme, grams_of

HOLDERS = ("acme", "globex")

ride = st.tuples(st.just("ride"), st.integers(1000, 42000))
retract = st.tuples(st.just("retract"), st.integers(0, 50))
run = st.tuples(st.just("run"), st.just(0))
transfer = st.tuples(
    st.just("transfer"),
    st.tuples(st.integers(0, 50), st.integers(1, 100), st.sampled_from(HOLDERS)),
)
retire = st.tuples(st.just("retire"), st.tuples(st.integers(0, 50), st.integers(1, 100)))
retire_stale = st.tuples(st.just("retire_stale"), st.integers(0, 50))
operations = st.lists(
    st.one_of(ride, ride, retract, run, run, transfer, retire, retire_stale),
    min_size=3,
    max_size=14,
)


@dataclass
class ModelCredit:
    external_id: str
    rider: uuid.UUID
    grams: int
    pooled: bool = False
    reversed: bool = False


@dataclass
class ModelBlock:
    id: int
    first: int
    last: int
    holder: str | None
    status: str = "active"


@dataclass
class Model:
    credits: list[ModelCredit] = field(default_factory=list)
    issued: int = 0
    next_serial: int = 1
    blocks: list[ModelBlock] = field(default_factory=list)
    dead_blocks: list[int] = field(default_factory=list)  # split: nobody may act on them

    @property
    def pool_balance(self) -> int:
        return sum(c.grams for c in self.credits if c.pooled and not c.reversed)

    def active(self) -> list[ModelBlock]:
        return [b for b in self.blocks if b.status == "active"]


async def _fresh(programme: Programme) -> None:
    """Each example starts from an empty programme (the fixture's state is shared)."""
    engine = programme.live.sessionmaker.kw["bind"]
    await empty_all_tables(engine)
    async with programme.live.sessionmaker() as session, session.begin():
        await sync_library(session)
    programme.live.app.state.registry_cache.invalidate()
    programme.live.app.state.partner_credentials.clear()
    programme.partner = await programme.live.partner(
        f"metro-{uuid.uuid4().hex[:6]}", ("transit.metro",)
    )
    programme.riders.clear()
    await programme.pool(min_kilograms=1)
    for code in HOLDERS:
        async with programme.live.sessionmaker() as session, session.begin():
            await reductions.create_holder(session, ACTOR, code=code, name=code.title())


async def _act(programme: Programme, work: object) -> object:
    async with programme.live.sessionmaker() as session, session.begin():
        return await work(session)  # type: ignore[operator]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=operations)
async def test_random_sequences_keep_every_rule(
    programme: Programme, steps: list[tuple[str, object]]
) -> None:
    await _fresh(programme)
    model = Model()
    for name, arg in steps:
        if name == "ride":
            assert isinstance(arg, int)
            rider = await programme.rider()
            [(external_id, grams)] = await programme.rides([(rider, arg)])
            assert grams == grams_of(arg)
            model.credits.append(ModelCredit(external_id, rider, grams))
        elif name == "retract":
            standing = [c for c in model.credits if not c.reversed]
            if not standing:
                continue
            credit = standing[int(arg) % len(standing)]  # type: ignore[call-overload]
            await programme.retract(credit.external_id)
            credit.reversed = True
        elif name == "run":
            eligible = [c for c in model.credits if not c.pooled and not c.reversed]
            pooled = sum(c.grams for c in eligible)
            available = model.pool_balance + pooled - model.issued
            issued = max(available, 0) // GRAMS_PER_SERIAL * GRAMS_PER_SERIAL
            try:
                batch = await programme.run()
            except NothingToPoolError:
                assert not eligible
                continue
            except PoolBelowMinimumError:
                assert eligible and issued < GRAMS_PER_SERIAL
                continue
            assert eligible and issued >= GRAMS_PER_SERIAL
            assert (batch.pooled_grams, batch.issued_grams) == (pooled, issued)
            assert batch.opening_grams == available - pooled
            assert batch.serial_first == model.next_serial
            for c in eligible:
                c.pooled = True
            model.issued += issued
            kg = issued // GRAMS_PER_SERIAL
            root = await programme.sql(
                "SELECT id FROM reduction_blocks WHERE batch_id = :b", b=batch.id
            )
            model.blocks.append(
                ModelBlock(int(root[0][0]), model.next_serial, model.next_serial + kg - 1, None)  # type: ignore[call-overload]
            )
            model.next_serial += kg
        elif name == "transfer":
            active = model.active()
            if not active:
                continue
            pick, share, to = arg  # type: ignore[misc]
            block = active[pick % len(active)]
            size = block.last - block.first + 1
            kg = max(1, size * share // 100)
            made = await _act(
                programme,
                lambda s, b=block, k=kg, t=to: reductions.transfer(
                    s, ACTOR, block_id=b.id, from_holder=b.holder, to_holder=t, kilograms=k
                ),
            )
            block.status = "split"
            model.dead_blocks.append(block.id)
            model.blocks.remove(block)
            parts = [(block.first, block.first + kg - 1, to)]
            if kg < size:
                parts.append((block.first + kg, block.last, block.holder))
            assert [(b.serial_first, b.serial_last) for b in made] == [p[:2] for p in parts]  # type: ignore[attr-defined]
            for b, (first, last, holder) in zip(made, parts, strict=True):  # type: ignore[call-overload]
                model.blocks.append(ModelBlock(b.id, first, last, holder))
        elif name == "retire":
            active = model.active()
            if not active:
                continue
            pick, share = arg  # type: ignore[misc]
            block = active[pick % len(active)]
            size = block.last - block.first + 1
            kg = max(1, size * share // 100)
            if block.holder is not None:  # someone else may not retire it
                wrong = next(h for h in (None, *HOLDERS) if h != block.holder)
                try:
                    await _act(
                        programme,
                        lambda s, b=block, w=wrong: reductions.retire(
                            s,
                            ACTOR,
                            block_id=b.id,
                            holder=w,
                            beneficiary="x",
                            reason="y",
                            now=datetime.now(UTC),
                        ),
                    )
                    raise AssertionError("retired by a non-holder")
                except BlockNotHeldError:
                    pass
            retirement = await _act(
                programme,
                lambda s, b=block, k=kg: reductions.retire(
                    s,
                    ACTOR,
                    block_id=b.id,
                    holder=b.holder,
                    kilograms=k,
                    beneficiary="Beneficiary",
                    reason="offset",
                    now=datetime.now(UTC),
                ),
            )
            model.blocks.remove(block)
            if kg < size:
                model.dead_blocks.append(block.id)
                retired_id = retirement.block_id  # type: ignore[attr-defined]
                rest = await programme.sql(
                    "SELECT id FROM reduction_blocks WHERE parent_id = :p AND id <> :r",
                    p=block.id,
                    r=retired_id,
                )
                model.blocks.append(
                    ModelBlock(
                        retired_id, block.first, block.first + kg - 1, block.holder, "retired"
                    )
                )
                model.blocks.append(
                    ModelBlock(int(rest[0][0]), block.first + kg, block.last, block.holder)  # type: ignore[call-overload]
                )
            else:
                block.status = "retired"
                model.blocks.append(block)
        elif name == "retire_stale":
            stale = [b.id for b in model.blocks if b.status == "retired"] + model.dead_blocks
            if not stale:
                continue
            block_id = stale[int(arg) % len(stale)]  # type: ignore[call-overload]
            try:
                await _act(
                    programme,
                    lambda s, i=block_id: reductions.retire(
                        s,
                        ACTOR,
                        block_id=i,
                        holder=None,
                        beneficiary="x",
                        reason="y",
                        now=datetime.now(UTC),
                    ),
                )
                raise AssertionError(f"block {block_id} retired again")
            except (BlockAlreadyRetiredError, BlockNotHeldError):
                pass
            except ProblemError as error:
                raise AssertionError(f"unexpected refusal {error!r}") from error

        # After every step: the stored state is the model's, and verify finds nothing.
        report = await programme.verify()
        assert report.breaches == [], (name, report.breaches)
        async with programme.live.sessionmaker() as session:
            position = await reductions.pool_position(session, "jx-metro")
        assert position.balance == model.pool_balance
        assert position.issued == model.issued
        for rider in {c.rider for c in model.credits}:
            assert await programme.grams(rider) == sum(
                c.grams
                for c in model.credits
                if c.rider == rider and not c.pooled and not c.reversed
            )
        stored = await programme.sql(
            "SELECT id, serial_first, serial_last, status FROM reduction_blocks"
            " WHERE status <> 'split' ORDER BY serial_first"
        )
        assert stored == sorted(
            ((b.id, b.first, b.last, b.status) for b in model.blocks), key=lambda t: t[1]
        )
    # The ledger's own invariants hold with the pool accounts in it (balances, chains, zero-sum).
    engine = programme.live.sessionmaker.kw["bind"]
    assert (await verify_ledger(engine)).violations == []
