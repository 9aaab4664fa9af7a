"""Property tests of `plan_credits`, the ledger's plan for a set of credits: no database.

The accounts are states as the shell would have locked them (any balance, any chain head);
the plan must balance every transaction, pay debt first, open the right lots, continue each
account's hash chain exactly as `ledger verify` recomputes it from the stored rows, and take
ids from the reserved ones in order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import event, given, settings
from hypothesis import strategies as st

from service.ledger.chain import ZERO_HASH, link, posting_digest, transaction_digest
from service.ledger.plan import (
    AccountState,
    CreditWrites,
    issuance_account_code,
    participant_account_code,
    plan_credits,
)
from service.ledger.schemas import Asset, CreditRequest, Status

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
ORIGIN = "crediting"
FAST = settings(max_examples=60, deadline=None)


@dataclasses.dataclass
class Case:
    specs: list[CreditRequest]
    accounts: dict[str, AccountState]
    issuance: dict[Asset, str]
    transaction_ids: list[int]
    lot_ids: list[int]
    known: dict[tuple[str, str], tuple[int, datetime]]

    def snapshot(self) -> dict[str, AccountState]:
        return {code: dataclasses.replace(s) for code, s in self.accounts.items()}

    def plan(self) -> CreditWrites:
        return plan_credits(
            self.specs,
            transaction_ids=self.transaction_ids,
            lot_ids=self.lot_ids,
            accounts=self.accounts,
            issuance=self.issuance,
            created_at=NOW,
            known_transactions=self.known or None,
        )


PARTICIPANTS = tuple(uuid.UUID(int=0xC000 + i) for i in range(3))
# A chain head: the zero hash of a fresh account, or any earlier link.
heads = st.one_of(
    st.just(ZERO_HASH), st.integers(0, 2**16).map(lambda n: hashlib.sha256(n.to_bytes(4)).digest())
)


@st.composite
def ascending_ids(draw: st.DrawFn, n: int) -> list[int]:
    """Reserved ids: ascending, not necessarily contiguous (a sequence's cache leaves gaps)."""
    ids = [draw(st.integers(1, 10**6))]
    for _ in range(n - 1):
        ids.append(ids[-1] + draw(st.integers(1, 3)))
    return ids[:n]


def as_stored(request: Any) -> dict[str, Any]:
    """A transaction's request as `ledger verify` reads it back from its jsonb column."""
    loaded: dict[str, Any] = orjson.loads(
        request if isinstance(request, str) else orjson.dumps(request)
    )
    return loaded


@st.composite
def cases(draw: st.DrawFn, *, known: str = "some") -> Case:
    ids = iter(range(draw(st.integers(1, 10**6)), 10**9))
    accounts: dict[str, AccountState] = {}

    def account(code: str, asset: str, bounded: bool, posted: int) -> None:
        held = draw(st.integers(0, posted)) if bounded and posted > 0 else 0
        chain_seq = draw(st.integers(0, 30))
        head = draw(heads) if chain_seq else ZERO_HASH
        accounts[code] = AccountState(next(ids), asset, bounded, posted, held, chain_seq, head)

    participants = PARTICIPANTS[: draw(st.integers(1, len(PARTICIPANTS)))]
    for pid in participants:
        for asset in (Asset.POINTS, Asset.GRAMS):
            account(participant_account_code(pid, asset), asset, True, draw(st.integers(0, 500)))
        if draw(st.booleans()):  # owed once: a DEBT account, perhaps paid off since
            debt = draw(st.integers(0, 400))
            account(participant_account_code(pid, Asset.DEBT), Asset.DEBT, True, debt)
    issuance = {}
    for asset in Asset:
        issuance[asset] = issuance_account_code(asset, draw(st.integers(0, 63)))
        account(issuance[asset], asset, False, -draw(st.integers(0, 10**6)))

    specs = []
    for n in range(draw(st.integers(0, 10))):
        pid = draw(st.sampled_from(participants))
        points = draw(st.integers(0, 300))
        grams = draw(st.integers(0 if points else 1, 300))  # never both zero (the shell checks)
        expires_at = NOW + timedelta(days=draw(st.integers(1, 3650)))
        request = CreditRequest(
            ORIGIN,
            f"event:{n}",
            pid,
            points,
            grams,
            expires_at,
            credit_id=str(n),
            methodology_id="transit.metro",
            methodology_version=1,
        )
        specs.append(request)

    known_map: dict[tuple[str, str], tuple[int, datetime]] = {}
    for n, spec in enumerate(specs):
        if known == "all" or (known == "some" and draw(st.booleans())):
            moment = NOW - timedelta(microseconds=draw(st.integers(0, 10**9)))
            known_map[(spec.origin, spec.key)] = (5 * 10**9 + n, moment)
    spare = draw(st.integers(0, 3))
    tx_ids = draw(ascending_ids(len(specs) + spare))
    lot_ids = draw(ascending_ids(len(specs) + spare))
    return Case(specs, accounts, issuance, tx_ids, lot_ids, known_map)


def _transactions(
    case: Case, writes: CreditWrites
) -> dict[int, tuple[str, str, dict[str, Any], datetime]]:
    """Each transaction's hashed fields, as `ledger verify` reads them back from the rows."""
    out = {
        tx_id: (origin, key, as_stored(request), created_at)
        for tx_id, origin, key, request, created_at in zip(
            writes.tx_id,
            writes.tx_origin,
            writes.tx_key,
            writes.tx_request,
            writes.tx_created_at,
            strict=True,
        )
    }
    for spec in case.specs:
        if (spec.origin, spec.key) in case.known:
            tx_id, moment = case.known[(spec.origin, spec.key)]
            out[tx_id] = (spec.origin, spec.key, spec.content(), moment)
    return out


# --- 1. balanced transactions, consecutive sequences, the chain verify recomputes ----------


@FAST
@given(case=cases())
def test_postings_balance_and_continue_each_chain(case: Case) -> None:
    before = case.snapshot()
    writes = case.plan()
    by_id = {s.id: s for s in before.values()}
    columns = (
        writes.posting_tx,
        writes.posting_account,
        writes.posting_asset,
        writes.posting_amount,
        writes.posting_seq,
        writes.posting_hash,
    )
    assert len({len(c) for c in columns}) == 1
    postings = list(zip(*columns, strict=True))

    sums: dict[tuple[int, str], int] = defaultdict(int)
    count: dict[int, int] = defaultdict(int)
    for tx_id, account_id, asset, amount, _, _ in postings:
        assert amount != 0
        assert asset == by_id[account_id].asset
        sums[(tx_id, asset)] += amount
        count[tx_id] += 1
    assert all(total == 0 for total in sums.values()), sums
    assert {r.transaction_id for r in writes.results} == set(count)
    assert all(n >= 2 for n in count.values())

    transactions = _transactions(case, writes)
    chains: dict[int, list[tuple[int, int, int, bytes]]] = defaultdict(list)
    for tx_id, account_id, _, amount, seq, chain_hash in postings:
        chains[account_id].append((tx_id, amount, seq, chain_hash))
    assert set(writes.accounts) == set(chains)
    for account_id, chain in chains.items():
        start = by_id[account_id]
        after = writes.accounts[account_id]
        assert [seq for _, _, seq, _ in chain] == list(
            range(start.chain_seq + 1, start.chain_seq + 1 + len(chain))
        )
        running = start.chain_hash
        for tx_id, amount, seq, chain_hash in chain:
            origin, key, request, created_at = transactions[tx_id]
            digest = transaction_digest(tx_id, origin, key, "credit", request, created_at)
            running = link(running, posting_digest(digest, account_id, start.asset, amount, seq))
            assert chain_hash == running
        assert (after.chain_seq, after.chain_hash) == (chain[-1][2], running)
        assert after.posted == start.posted + sum(amount for _, amount, _, _ in chain)
        assert after.held == start.held
    # The states passed in are the ones updated, and untouched accounts are left alone.
    for code, state in case.accounts.items():
        if state.id in writes.accounts:
            assert writes.accounts[state.id] is state
        else:
            assert state == before[code]


# --- 2. debt first, lots, balances -------------------------------------------------------------


@FAST
@given(case=cases())
def test_debt_is_paid_first_and_the_rest_opens_a_lot(case: Case) -> None:
    before = case.snapshot()
    writes = case.plan()
    tx_of = [r.transaction_id for r in writes.results]
    assert len(writes.results) == len(case.specs)
    assert all(r.status is Status.CREATED for r in writes.results)
    lots = {
        tx: (lot_id, account, amount, expires)
        for lot_id, account, tx, amount, expires in zip(
            writes.lot_id,
            writes.lot_account,
            writes.lot_tx,
            writes.lot_amount,
            writes.lot_expires_at,
            strict=True,
        )
    }
    assert len(lots) == len(writes.lot_id)  # at most one lot per transaction

    def moved(tx_id: int | None, code: str) -> int:
        account_id = case.accounts[code].id if code in case.accounts else None
        return sum(
            amount
            for tx, account, amount in zip(
                writes.posting_tx, writes.posting_account, writes.posting_amount, strict=True
            )
            if tx == tx_id and account == account_id
        )

    debt = {
        pid: before[participant_account_code(pid, Asset.DEBT)].posted
        if participant_account_code(pid, Asset.DEBT) in before
        else 0
        for pid in {s.participant_id for s in case.specs}
    }
    for spec, result, tx_id in zip(case.specs, writes.results, tx_of, strict=True):
        pid = spec.participant_id
        paid = min(debt[pid], spec.points)
        debt[pid] -= paid
        if paid:
            event("debt paid")
        assert result.debt_paid == paid
        points_code = participant_account_code(pid, Asset.POINTS)
        assert moved(tx_id, points_code) == spec.points - paid
        assert moved(tx_id, participant_account_code(pid, Asset.DEBT)) == -paid
        assert moved(tx_id, participant_account_code(pid, Asset.GRAMS)) == spec.grams
        assert moved(tx_id, case.issuance[Asset.POINTS]) == -(spec.points - paid)
        assert moved(tx_id, case.issuance[Asset.DEBT]) == paid
        assert moved(tx_id, case.issuance[Asset.GRAMS]) == -spec.grams
        if spec.points - paid > 0:
            lot_id, account, amount, expires = lots[tx_id]  # type: ignore[index]
            assert result.lot_id == lot_id
            assert (account, amount, expires) == (
                case.accounts[points_code].id,
                spec.points - paid,
                spec.expires_at,
            )
        else:
            event("no lot")
            assert result.lot_id is None
            assert tx_id not in lots
    # Balances: each participant's points grew by its lots, its debt shrank by what it paid.
    for pid, owed in debt.items():
        points_code = participant_account_code(pid, Asset.POINTS)
        opened = sum(
            amount
            for account, amount in zip(writes.lot_account, writes.lot_amount, strict=True)
            if account == case.accounts[points_code].id
        )
        assert case.accounts[points_code].posted == before[points_code].posted + opened
        debt_code = participant_account_code(pid, Asset.DEBT)
        if debt_code in before:
            assert case.accounts[debt_code].posted == owed >= 0


# --- 3. ids ------------------------------------------------------------------------------------


@FAST
@given(case=cases())
def test_ids_are_taken_from_the_reserved_ones_in_order(case: Case) -> None:
    writes = case.plan()
    fresh = [s for s in case.specs if (s.origin, s.key) not in case.known]
    assert writes.tx_id == case.transaction_ids[: len(fresh)]
    assert writes.tx_key == [s.key for s in fresh]
    assert writes.tx_origin == [s.origin for s in fresh]
    assert writes.tx_created_at == [NOW] * len(fresh)
    assert [as_stored(r) for r in writes.tx_request] == [s.content() for s in fresh]
    assert writes.lot_id == case.lot_ids[: len(writes.lot_id)]
    new = iter(writes.tx_id)
    for spec, result in zip(case.specs, writes.results, strict=True):
        known = case.known.get((spec.origin, spec.key))
        assert result.transaction_id == (next(new) if known is None else known[0])
    assert [r.lot_id for r in writes.results if r.lot_id is not None] == writes.lot_id


@FAST
@given(case=cases(known="all"))
def test_known_transactions_are_not_inserted_again(case: Case) -> None:
    writes = case.plan()
    assert writes.tx_id == []
    assert (writes.tx_origin, writes.tx_key, writes.tx_request, writes.tx_created_at) == (
        [],
        [],
        [],
        [],
    )
    assert [r.transaction_id for r in writes.results] == [
        case.known[(s.origin, s.key)][0] for s in case.specs
    ]
    assert set(writes.posting_tx) <= {tx_id for tx_id, _ in case.known.values()}


@FAST
@given(case=cases(known="none"))
def test_the_same_plan_twice_is_the_same(case: Case) -> None:
    again = dataclasses.replace(case, accounts=case.snapshot())
    first, second = case.plan(), again.plan()
    assert first == second
