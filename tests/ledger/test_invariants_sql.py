"""Hand-written SQL against every invariant the database itself guards.

Each test attempts a bad write on its own connection, then COMMITs, and expects
PostgreSQL to refuse it either at the statement or at the commit (so the tests
hold whether a guard is an immediate trigger, a statement-level trigger over
transition tables, or a deferred constraint trigger). Afterwards a fresh
connection must see every guarded table exactly as before.

Invariants are numbered as in PRODUCT.md: 1 zero-sum, 2 available >= 0,
5 credits and methodology versions never change, 7 append-only + hash chain
(the chain detects, `ledger verify` reports). Lot remainders and cap usage
ranges are plain CHECK constraints. A guard the database does NOT have is an
`xfail(strict=True)` test with the reason spelled out (remove the mark once it exists).
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.embedded import to_asyncpg_dsn
from service.ledger import service as ledger
from service.ledger.chain import ZERO_HASH, link, posting_digest, transaction_digest
from service.ledger.verify import verify_ledger
from tests.ledger.conftest import NOW, Ledger

ORIGIN = "sql-invariants"

# Every table a refused write must leave untouched (compared row for row).
WATCHED = (
    "ledger_accounts",
    "ledger_transactions",
    "ledger_postings",
    "ledger_lots",
    "ledger_lot_movements",
    "ledger_holds",
    "ledger_hold_resolutions",
    "partner_events",
    "credits",
    "redemptions",
    "methodology_versions",
    "cap_usage",
)

# How a zero-sum refusal looks. One place to adjust if the guard's wording changes; the
# SQLSTATE keeps a refusal by some other constraint (unique, foreign key) from passing.
ZERO_SUM_SQLSTATE = "23514"  # check_violation
ZERO_SUM_MESSAGE = r"does not sum to zero|at least two|posting"
APPEND_ONLY_SQLSTATE = "23000"  # integrity_constraint_violation

P0 = "program:issuance:POINTS:00"
P1 = "program:issuance:POINTS:01"
G0 = "program:issuance:GCO2E:00"
G1 = "program:issuance:GCO2E:01"

# Hand-written postings land far above any sequence number the service reaches in a test.
_SEQ = itertools.count(1_000_000)

Posting = tuple[str, int] | tuple[str, int, str]  # (account code, amount[, asset label])


# --- SQL builders -------------------------------------------------------------------------


def _tx_row(key: str) -> str:
    return (
        "INSERT INTO ledger_transactions (origin, idempotency_key, kind, request)"
        f" VALUES ('{ORIGIN}', '{key}', 'credit', '{{}}')"
    )


def _label(posting: Posting) -> str:
    return f"'{posting[2]}'" if len(posting) == 3 else "NULL"


def _insert_postings(tx_ref: str, postings: Sequence[Posting]) -> str:
    rows = ", ".join(f"('{p[0]}', {_label(p)}::varchar, {p[1]}, {next(_SEQ)})" for p in postings)
    # The posting's asset is its account's unless a test labels it otherwise.
    return (
        "INSERT INTO ledger_postings"
        " (transaction_id, account_id, asset, amount, account_seq, chain_hash)"
        f" SELECT {tx_ref}, a.id, coalesce(v.asset, a.asset), v.amount, v.seq,"
        " sha256(convert_to(v.code || v.seq, 'UTF8'))"
        f" FROM (VALUES {rows}) AS v(code, asset, amount, seq)"
        " JOIN ledger_accounts a ON a.code = v.code"
    )


def new_transaction(key: str, *postings: Posting) -> str:
    """One statement: a transaction row and its postings (a data-modifying CTE)."""
    if not postings:
        return _tx_row(key)
    return f"WITH t AS ({_tx_row(key)} RETURNING id) " + _insert_postings(
        "(SELECT id FROM t)", postings
    )


def more_postings(tx: str | int, *postings: Posting) -> str:
    """A later statement adding postings to a transaction (by our key, or by id)."""
    ref = (
        str(tx)
        if isinstance(tx, int)
        else f"(SELECT id FROM ledger_transactions WHERE origin = '{ORIGIN}'"
        f" AND idempotency_key = '{tx}')"
    )
    return _insert_postings(ref, postings)


# --- the database, seen through plain asyncpg connections ---------------------------------


@dataclass
class Db:
    dsn: str

    async def execute(self, *statements: str) -> None:
        """Run and commit (setup, or a write the test expects to succeed)."""
        conn = await asyncpg.connect(self.dsn)
        try:
            async with conn.transaction():
                for statement in statements:
                    await conn.execute(statement)
        finally:
            await conn.close()

    async def fetchval(self, query: str, *args: object) -> object:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    async def attempt(self, *statements: str) -> asyncpg.PostgresError | None:
        """Run the statements then COMMIT; the error if refused at either point."""
        conn = await asyncpg.connect(self.dsn)
        try:
            tx = conn.transaction()
            await tx.start()
            try:
                for statement in statements:
                    await conn.execute(statement)
            except asyncpg.PostgresError as error:
                await tx.rollback()
                return error
            try:
                await tx.commit()
            except asyncpg.PostgresError as error:
                return error
            return None
        finally:
            await conn.close()

    async def snapshot(self) -> dict[str, tuple[int, str]]:
        """Row count and a digest of every row of every watched table, on a fresh connection."""
        conn = await asyncpg.connect(self.dsn)
        try:
            return {
                table: tuple(
                    await conn.fetchrow(
                        f"SELECT count(*), md5(coalesce(string_agg(x::text, '|'"
                        f" ORDER BY x::text), '')) FROM {table} x"
                    )
                )
                for table in WATCHED
            }
        finally:
            await conn.close()

    async def refuses(
        self,
        *statements: str,
        sqlstate: str,
        message: str,
        constraint: str | None = None,
    ) -> asyncpg.PostgresError:
        """The write is refused by the named guard and leaves nothing behind.

        `sqlstate` and `message` are regular expressions (the SQLSTATE matched whole).
        """
        before = await self.snapshot()
        error = await self.attempt(*statements)
        assert error is not None, f"the database accepted: {statements}"
        assert re.fullmatch(sqlstate, error.sqlstate), (error.sqlstate, str(error))
        assert re.search(message, str(error)), str(error)
        if constraint is not None:
            assert error.constraint_name == constraint, (error.constraint_name, str(error))
        assert await self.snapshot() == before
        return error


@pytest.fixture
def pg(committed: AsyncEngine) -> Db:
    return Db(to_asyncpg_dsn(committed.url.render_as_string(hide_password=False)))


# --- a small committed history with a row in every guarded table --------------------------


@dataclass(frozen=True)
class History:
    alice: uuid.UUID
    merchant: uuid.UUID
    partner: uuid.UUID
    first_tx: int
    second_tx: int
    hold_id: int
    event_id: int

    def account(self, asset: str = "POINTS") -> str:
        return f"(SELECT id FROM ledger_accounts WHERE code = 'participant:{self.alice}:{asset}')"


@pytest.fixture
async def history(ledger_env: Ledger, pg: Db) -> History:
    alice, merchant, partner = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await pg.execute(
        f"INSERT INTO participants (id, kind, display_name) VALUES ('{alice}', 'citizen', 'A')",
        "INSERT INTO partners (id, code, name, kind, allowed_action_types)"
        f" VALUES ('{partner}', 'metro', 'Metro', 'transit', ARRAY['transit.metro'])",
        f"INSERT INTO merchants (id, code, name) VALUES ('{merchant}', 'cafe', 'Cafe')",
        "INSERT INTO methodology_versions"
        " (methodology_id, version, action_type, effective_from, content_hash, source_yaml)"
        " VALUES ('metro', 1, 'transit.metro', '2026-01-01Z', repeat('a', 64), 'id: metro')",
        "INSERT INTO cap_usage (participant_id, usage_key, grams, points)"
        f" VALUES ('{alice}', 'day:2026-11-30', 100, 100)",
    )
    first = await ledger_env.credit(alice, 100, grams=100)
    second = await ledger_env.credit(alice, 40, grams=40, expires_at=NOW + timedelta(days=5))
    placed = await ledger_env.run(
        lambda s: ledger.place_hold(
            s,
            origin="till",
            key="h",
            participant_id=alice,
            merchant_id=merchant,
            amount=60,
            now=NOW,
            hold_for=timedelta(minutes=5),
        )
    )
    await ledger_env.run(
        lambda s: ledger.post_hold(
            s, origin="till", key="p", hold_id=placed.hold_id, amount=50, now=NOW
        )
    )
    assert first.transaction_id is not None and second.transaction_id is not None
    event_id = await pg.fetchval(
        "INSERT INTO partner_events (partner_id, external_id, content_hash, action_type,"
        " occurred_at, received_at, subject_hash, quantities, status, participant_id,"
        " methodology_id, methodology_version, grams, points, reasons, credit_transaction_id)"
        f" VALUES ('{partner}', 'e-1', '\\x01', 'transit.metro', '2026-11-30Z', '2026-11-30Z',"
        f" '\\x02', '{{\"km\": 5}}', 'credited', '{alice}', 'metro', 1, 100, 100, '[]',"
        f" {first.transaction_id}) RETURNING id"
    )
    await pg.execute(
        "INSERT INTO credits (event_id, participant_id, partner_id, action_type, occurred_at,"
        " received_at, methodology_id, methodology_version, inputs, usage_before, status,"
        " grams, points, transaction_id)"
        f" VALUES ({event_id}, '{alice}', '{partner}', 'transit.metro', '2026-11-30Z',"
        f" '2026-11-30Z', 'metro', 1, '{{\"km\": 5}}', '{{}}', 'credited', 100, 100,"
        f" {first.transaction_id})",
        "INSERT INTO redemptions (id, merchant_id, participant_id, points, hold_id)"
        f" VALUES ('{uuid.uuid4()}', '{merchant}', '{alice}', 50, {placed.hold_id})",
    )
    assert isinstance(event_id, int)
    history = History(
        alice,
        merchant,
        partner,
        first.transaction_id,
        second.transaction_id,
        placed.hold_id,
        event_id,
    )
    # Every guarded table holds rows, so row-level guards really fire.
    empty = [table for table, (rows, _) in (await pg.snapshot()).items() if rows == 0]
    assert not empty, empty
    assert (await ledger_env.verify()).ok
    return history


# --- 1. each transaction's postings sum to zero per asset ---------------------------------

ZERO_SUM_CASES = [
    pytest.param(
        [new_transaction("two-unbalanced", (P0, 5), (P1, -3))],
        id="two-postings-one-statement-unbalanced",
    ),
    pytest.param(
        [new_transaction("split", (P0, 5)), more_postings("split", (P1, -3))],
        id="postings-split-across-two-statements-unbalanced",
    ),
    pytest.param(
        [new_transaction("split-three", (P0, 5)), more_postings("split-three", (P1, -2), (P1, -2))],
        id="three-postings-split-across-statements-unbalanced",
    ),
    pytest.param([new_transaction("single", (P0, 5))], id="one-posting"),
    pytest.param([new_transaction("empty")], id="transaction-row-without-postings"),
    pytest.param(
        [new_transaction("third", (P0, 5), (P1, -5)), more_postings("third", (P0, 1))],
        id="third-posting-in-a-later-statement",
    ),
    pytest.param(
        [new_transaction("cross-asset", (P0, 5), (G0, -5))],
        id="balanced-overall-unbalanced-per-asset",
    ),
    pytest.param(
        [new_transaction("one-asset-off", (P0, 5), (P1, -5), (G0, 3), (G1, -2))],
        id="one-asset-balanced-the-other-not",
    ),
    pytest.param(
        [new_transaction("a", (P0, 5), (P1, -5)), new_transaction("b", (P0, 7), (P1, -6))],
        id="second-transaction-of-a-batch-unbalanced",
    ),
]


@pytest.mark.parametrize("statements", ZERO_SUM_CASES)
async def test_an_unbalanced_transaction_is_refused(pg: Db, statements: list[str]) -> None:
    await pg.refuses(*statements, sqlstate=ZERO_SUM_SQLSTATE, message=ZERO_SUM_MESSAGE)


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(new_transaction("ok", (P0, 5), (P1, -5)), id="two-postings"),
        pytest.param(
            new_transaction("ok-two-assets", (P0, 5), (P1, -5), (G0, 3), (G1, -3)),
            id="two-assets-each-balanced",
        ),
    ],
)
async def test_the_same_hand_written_sql_balanced_is_accepted(pg: Db, statement: str) -> None:
    """Control: the refusals above come from the zero-sum guard, not from malformed SQL."""
    assert await pg.attempt(statement) is None
    postings = await pg.fetchval(
        "SELECT count(*) FROM ledger_postings p JOIN ledger_transactions t"
        f" ON t.id = p.transaction_id WHERE t.origin = '{ORIGIN}'"
    )
    assert postings == statement.count("::varchar")


async def test_a_posting_added_to_a_committed_transaction_later_is_refused(
    pg: Db, history: History
) -> None:
    await pg.refuses(
        more_postings(history.first_tx, (P0, 1)),
        sqlstate=ZERO_SUM_SQLSTATE,
        message=ZERO_SUM_MESSAGE,
    )


async def test_a_hand_written_transaction_cannot_be_extended_in_a_later_db_transaction(
    pg: Db,
) -> None:
    await pg.execute(new_transaction("committed", (P0, 5), (P1, -5)))
    await pg.refuses(
        more_postings("committed", (P1, -1)),
        sqlstate=ZERO_SUM_SQLSTATE,
        message=ZERO_SUM_MESSAGE,
    )


@pytest.mark.parametrize(
    "postings",
    [
        # POINTS +5 / GCO2E -5 disguised as balanced GCO2E: the zero-sum check sums by label.
        pytest.param([(P0, 5, "GCO2E"), (G0, -5)], id="disguised-cross-asset"),
        pytest.param([(P0, 5, "DEBT"), (P1, -5, "DEBT")], id="both-mislabelled"),
    ],
)
async def test_a_posting_labelled_with_another_asset_than_its_account_is_refused(
    pg: Db, postings: list[Posting]
) -> None:
    # Found missing by this file; closed by the (account_id, asset) foreign key.
    await pg.refuses(
        new_transaction("mislabelled", *postings),
        sqlstate="23503",  # foreign_key_violation
        message=r"fk_ledger_postings_account_id_asset_ledger_accounts",
        constraint="fk_ledger_postings_account_id_asset_ledger_accounts",
    )


@pytest.mark.xfail(
    strict=True,
    reason="NOT ENFORCED: a committed transaction is not closed; a later DB transaction may"
    " append postings to it as long as they net to zero per asset (the zero-sum guard is"
    " all that looks at them, and no guard ties postings to the statement or DB"
    " transaction that created their ledger transaction)",
)
async def test_a_balanced_pair_added_to_a_committed_transaction_later_is_refused(
    pg: Db, history: History
) -> None:
    # Loose on purpose: whatever guard closes this must turn the test into an XPASS.
    await pg.refuses(
        more_postings(history.first_tx, (P0, 1), (P1, -1)),
        sqlstate=r"23\d{3}|P0001",
        message=r".",
    )


# --- 2. available points never below zero; holds count against them ----------------------


@pytest.mark.parametrize(
    ("assignment", "where", "constraint"),
    [
        pytest.param(
            "held = posted + 1",
            "code = 'participant:{alice}:POINTS'",
            "ck_ledger_accounts_available_non_negative",
            id="held-above-posted",
        ),
        pytest.param(
            "posted = held - 1",
            "code = 'participant:{alice}:POINTS'",
            "ck_ledger_accounts_available_non_negative",
            id="posted-below-held",
        ),
        pytest.param(
            "posted = -posted",
            "code = 'participant:{alice}:GCO2E'",
            "ck_ledger_accounts_available_non_negative",
            id="grams-negative",
        ),
        pytest.param(
            "posted = -1",
            "owner_id = '{merchant}' AND kind = 'settlement'",
            "ck_ledger_accounts_available_non_negative",
            id="merchant-settlement-negative",
        ),
        pytest.param(
            "held = -1",
            "code = 'participant:{alice}:POINTS'",
            "ck_ledger_accounts_held_non_negative",
            id="held-negative",
        ),
        pytest.param(
            "held = -1",
            f"code = '{P0}'",
            "ck_ledger_accounts_held_non_negative",
            id="held-negative-on-unbounded-issuance",
        ),
    ],
)
async def test_a_bounded_balance_cannot_go_below_zero(
    pg: Db, history: History, assignment: str, where: str, constraint: str
) -> None:
    where = where.format(alice=history.alice, merchant=history.merchant)
    assert await pg.fetchval(f"SELECT count(*) FROM ledger_accounts WHERE {where}") == 1
    await pg.refuses(
        f"UPDATE ledger_accounts SET {assignment} WHERE {where}",
        sqlstate="23514",
        message=constraint,
        constraint=constraint,
    )


async def test_a_new_bounded_account_cannot_start_negative(pg: Db) -> None:
    await pg.refuses(
        "INSERT INTO ledger_accounts (code, owner_type, owner_id, asset, kind, bounded, posted)"
        f" VALUES ('participant:{uuid.uuid4()}:POINTS', 'participant', gen_random_uuid(),"
        " 'POINTS', 'participant', true, -1)",
        sqlstate="23514",
        message="ck_ledger_accounts_available_non_negative",
        constraint="ck_ledger_accounts_available_non_negative",
    )


@pytest.mark.parametrize("asset", ["POINTS", "GCO2E", "DEBT"])
async def test_an_unbounded_participant_account_is_refused(pg: Db, asset: str) -> None:
    # Found missing by this file: available >= 0 could be switched off at insert. (The
    # migration names the constraint ck_ledger_accounts_ck_ledger_accounts_participant_bounded,
    # the naming convention applied twice; the model says ck_ledger_accounts_participant_bounded.)
    participant = uuid.uuid4()
    await pg.refuses(
        "INSERT INTO ledger_accounts (code, owner_type, owner_id, asset, kind, bounded)"
        f" VALUES ('participant:{participant}:{asset}', 'participant', '{participant}',"
        f" '{asset}', 'participant', false)",
        sqlstate="23514",
        message=r"violates check constraint \"ck_ledger_accounts_\w*participant_bounded\"",
    )


# --- 7. fact tables are append-only -------------------------------------------------------

APPEND_ONLY_UPDATES = {
    "ledger_transactions": "request = request || '{\"points\": 1000}'",
    "ledger_postings": "amount = amount * 2",
    "ledger_lot_movements": "amount = amount + 1",
    "ledger_holds": "amount = amount + 1",
    "ledger_hold_resolutions": "amount_posted = amount_posted + 1",
    "credits": "points = points + 1",
    "redemptions": "points = points + 1",
}


def _append_only_cases() -> list[object]:
    cases: list[object] = []
    for table, assignment in APPEND_ONLY_UPDATES.items():
        cases.append(pytest.param(table, f"UPDATE {table} SET {assignment}", id=f"{table}-update"))
        cases.append(pytest.param(table, f"DELETE FROM {table}", id=f"{table}-delete"))
        # CASCADE: without it the foreign keys alone refuse most of these, guard or not.
        # (redemptions had no TRUNCATE guard until this file found it missing.)
        cases.append(pytest.param(table, f"TRUNCATE {table} CASCADE", id=f"{table}-truncate"))
    return cases


@pytest.mark.parametrize(("table", "statement"), _append_only_cases())
async def test_fact_rows_cannot_be_changed(
    pg: Db, history: History, table: str, statement: str
) -> None:
    operation = statement.split()[0]
    await pg.refuses(
        statement,
        sqlstate=APPEND_ONLY_SQLSTATE,
        message=rf"append-only: {operation} on {table}\b",
    )


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("UPDATE ledger_lots SET amount = amount + 1", id="amount"),
        pytest.param(
            "UPDATE ledger_lots SET expires_at = expires_at + interval '1 year'", id="expires_at"
        ),
        pytest.param(
            "UPDATE ledger_lots SET account_id = (SELECT id FROM ledger_accounts"
            f" WHERE code = '{P0}')",
            id="account_id",
        ),
        pytest.param(
            "UPDATE ledger_lots SET transaction_id = (SELECT max(id) FROM ledger_transactions)",
            id="transaction_id",
        ),
        pytest.param("UPDATE ledger_lots SET id = id + 1000", id="id"),
        pytest.param(
            "UPDATE ledger_lots SET remaining = remaining - 1, amount = amount - 1"
            " WHERE remaining > 1",
            id="amount-alongside-remaining",
        ),
        pytest.param("DELETE FROM ledger_lots", id="delete"),
    ],
)
async def test_only_a_lots_remaining_may_change(pg: Db, history: History, statement: str) -> None:
    await pg.refuses(
        statement,
        sqlstate=APPEND_ONLY_SQLSTATE,
        message=r"append-only: only ledger_lots\.remaining may change",
    )


@pytest.mark.parametrize(
    ("assignment", "target"),
    [
        pytest.param("code = code || ':x'", "alice", id="code"),
        pytest.param("asset = 'GCO2E'", "alice", id="asset"),
        pytest.param("kind = 'issuance'", "alice", id="kind"),
        pytest.param("bounded = false", "alice", id="bounded"),
        pytest.param("owner_type = 'merchant'", "alice", id="owner_type"),
        pytest.param("owner_id = gen_random_uuid()", "alice", id="owner_id"),
        pytest.param("owner_id = gen_random_uuid()", "program", id="owner_id-from-null"),
        pytest.param("id = id + 100000", "alice", id="id"),
    ],
)
async def test_an_accounts_identity_cannot_change(
    pg: Db, history: History, assignment: str, target: str
) -> None:
    where = f"id = {history.account()}" if target == "alice" else f"code = '{P0}'"
    await pg.refuses(
        f"UPDATE ledger_accounts SET {assignment} WHERE {where}",
        sqlstate=APPEND_ONLY_SQLSTATE,
        message=r"append-only: only balances and chain heads may change",
    )


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        pytest.param(
            "DELETE FROM ledger_accounts WHERE code = 'program:issuance:DEBT:63'",
            r"append-only: only balances and chain heads may change",
            id="accounts-delete",
        ),
        pytest.param(
            "TRUNCATE ledger_accounts CASCADE",
            r"append-only: TRUNCATE on ledger_accounts\b",
            id="accounts-truncate",
        ),
        pytest.param(
            "TRUNCATE ledger_lots CASCADE",
            r"append-only: TRUNCATE on ledger_lots\b",
            id="lots-truncate",
        ),
    ],
)
async def test_accounts_and_lots_cannot_be_removed(
    pg: Db, history: History, statement: str, message: str
) -> None:
    await pg.refuses(statement, sqlstate=APPEND_ONLY_SQLSTATE, message=message)


# partner_events: the partner's report is a fact; its outcome columns are state.


@pytest.mark.parametrize(
    "assignment",
    [
        pytest.param("partner_id = gen_random_uuid()", id="partner_id"),
        pytest.param("external_id = 'e-2'", id="external_id"),
        pytest.param("content_hash = '\\x03'", id="content_hash"),
        pytest.param("action_type = 'transit.bus'", id="action_type"),
        pytest.param("occurred_at = occurred_at - interval '1 day'", id="occurred_at"),
        pytest.param("received_at = received_at + interval '1 day'", id="received_at"),
        pytest.param("subject_hash = '\\x04'", id="subject_hash"),
        pytest.param("region = 'CN-36'", id="region-from-null"),
        pytest.param("quantities = '{\"km\": 50}'", id="quantities"),
        pytest.param("place_ids = '[\"p1\"]'", id="place_ids-from-null"),
        pytest.param("id = id + 1000", id="id"),
    ],
)
async def test_a_partner_events_report_cannot_change(
    pg: Db, history: History, assignment: str
) -> None:
    await pg.refuses(
        f"UPDATE partner_events SET {assignment} WHERE id = {history.event_id}",
        sqlstate=APPEND_ONLY_SQLSTATE,
        message=r"partner events are append-only: only the outcome may change",
    )


async def test_a_partner_event_cannot_be_deleted(pg: Db, history: History) -> None:
    await pg.refuses(
        f"DELETE FROM partner_events WHERE id = {history.event_id}",
        sqlstate=APPEND_ONLY_SQLSTATE,
        message=r"partner events are append-only",
    )


@pytest.mark.parametrize(
    ("statement", "sqlstate", "message"),
    [
        # partner_events has no TRUNCATE trigger of its own: what stops a TRUNCATE is the
        # foreign key from credits and, with CASCADE, the credits table's guard.
        pytest.param("TRUNCATE partner_events", "0A000", r"foreign key constraint", id="restrict"),
        pytest.param(
            "TRUNCATE partner_events CASCADE",
            APPEND_ONLY_SQLSTATE,
            r"append-only: TRUNCATE on (partner_events|credits)\b",
            id="cascade",
        ),
    ],
)
async def test_partner_events_cannot_be_truncated(
    pg: Db, history: History, statement: str, sqlstate: str, message: str
) -> None:
    await pg.refuses(statement, sqlstate=sqlstate, message=message)


async def test_a_partner_events_outcome_may_change(pg: Db, history: History) -> None:
    """What the guard allows: the outcome columns (here a retraction)."""
    assert (
        await pg.attempt(
            "UPDATE partner_events SET status = 'retracted', reasons = '[{\"code\": \"r\"}]',"
            f" outcome_seq = nextval('partner_event_outcome_seq') WHERE id = {history.event_id}"
        )
        is None
    )
    assert (
        await pg.fetchval(f"SELECT status FROM partner_events WHERE id = {history.event_id}")
        == "retracted"
    )


@pytest.mark.parametrize(
    ("setup", "assignment"),
    [
        pytest.param(
            None,
            "status = 'pending', credit_transaction_id = NULL, points = 0, grams = 0",
            id="credited-back-to-pending-unlinked",
        ),
        pytest.param(None, "status = 'received'", id="credited-back-to-received"),
        pytest.param(None, "status = 'capped'", id="credited-to-another-final-outcome"),
        pytest.param(None, "points = points * 10", id="credited-amounts-rewritten-in-place"),
        pytest.param(
            None,
            "status = 'retracted', credit_transaction_id = NULL",
            id="retraction-stripping-the-credit",
        ),
        pytest.param(
            None, "status = 'retracted', points = 0", id="retraction-rewriting-the-amounts"
        ),
        pytest.param("status = 'retracted'", "status = 'credited'", id="retracted-is-final"),
    ],
)
async def test_an_events_outcome_only_moves_forward(
    pg: Db, history: History, setup: str | None, assignment: str
) -> None:
    # Found missing by this file: the guard froze the report but not the outcome's direction.
    where = f"WHERE id = {history.event_id}"
    if setup is not None:
        await pg.execute(f"UPDATE partner_events SET {setup} {where}")
    await pg.refuses(
        f"UPDATE partner_events SET {assignment} {where}",
        sqlstate=APPEND_ONLY_SQLSTATE,
        message=r"an event's outcome only moves forward",
    )


# methodology_versions (invariant 5: a credit's stored version must stay what it was).


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("UPDATE methodology_versions SET source_yaml = 'id: other'", id="source"),
        pytest.param("UPDATE methodology_versions SET content_hash = repeat('b', 64)", id="hash"),
        pytest.param("UPDATE methodology_versions SET version = 2", id="version"),
        pytest.param(
            "UPDATE methodology_versions SET effective_from = effective_from - interval '1 day'",
            id="effective_from",
        ),
        pytest.param("DELETE FROM methodology_versions", id="delete"),
    ],
)
async def test_a_filed_methodology_version_cannot_change(
    pg: Db, history: History, statement: str
) -> None:
    await pg.refuses(
        statement,
        sqlstate=APPEND_ONLY_SQLSTATE,
        message=r"methodology versions are immutable once filed",
    )


async def test_a_methodology_versions_end_can_be_set_once_only(pg: Db, history: History) -> None:
    assert await pg.attempt("UPDATE methodology_versions SET effective_to = '2027-01-01Z'") is None
    await pg.refuses(
        "UPDATE methodology_versions SET effective_to = '2028-01-01Z'",
        sqlstate=APPEND_ONLY_SQLSTATE,
        message=r"methodology versions are immutable once filed",
    )


async def test_methodology_versions_cannot_be_truncated(pg: Db, history: History) -> None:
    # Found missing by this file: no TRUNCATE trigger, and no foreign key points here.
    await pg.refuses(
        "TRUNCATE methodology_versions CASCADE",
        sqlstate=APPEND_ONLY_SQLSTATE,
        message=r"append-only: TRUNCATE on methodology_versions\b",
    )


# --- lot remainders and cap usage stay in range -------------------------------------------


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        pytest.param(
            "UPDATE ledger_lots SET remaining = amount + 1",
            "ck_ledger_lots_remaining_in_range",
            id="remaining-above-amount",
        ),
        pytest.param(
            "UPDATE ledger_lots SET remaining = -1",
            "ck_ledger_lots_remaining_in_range",
            id="remaining-negative",
        ),
        pytest.param(
            "INSERT INTO ledger_lots (account_id, transaction_id, amount, remaining, expires_at)"
            " SELECT account_id, transaction_id, 10, 11, expires_at FROM ledger_lots LIMIT 1",
            "ck_ledger_lots_remaining_in_range",
            id="insert-remaining-above-amount",
        ),
        pytest.param(
            "INSERT INTO ledger_lots (account_id, transaction_id, amount, remaining, expires_at)"
            " SELECT account_id, transaction_id, 0, 0, expires_at FROM ledger_lots LIMIT 1",
            "ck_ledger_lots_amount_positive",
            id="insert-amount-zero",
        ),
        pytest.param(
            "UPDATE cap_usage SET grams = -1", "ck_cap_usage_non_negative", id="cap-grams-negative"
        ),
        pytest.param(
            "UPDATE cap_usage SET points = points - 101",
            "ck_cap_usage_non_negative",
            id="cap-points-negative",
        ),
        pytest.param(
            "INSERT INTO cap_usage (participant_id, usage_key, grams, points)"
            " SELECT participant_id, 'other', 0, -1 FROM cap_usage LIMIT 1",
            "ck_cap_usage_non_negative",
            id="cap-insert-negative",
        ),
    ],
)
async def test_lot_remainders_and_cap_usage_stay_in_range(
    pg: Db, history: History, statement: str, constraint: str
) -> None:
    await pg.refuses(statement, sqlstate="23514", message=constraint, constraint=constraint)


# --- 7. the hash chain detects what a superuser forces past the guards --------------------


async def _tamper(pg: Db, statements: Sequence[str], bypass: str) -> None:
    """Rewrite rows as a superuser would: switch the guards off, edit, switch them back."""
    tables = ("ledger_transactions", "ledger_postings", "ledger_lots", "ledger_lot_movements")
    if bypass == "replica":
        prefix, suffix = ["SET LOCAL session_replication_role = replica"], []
    elif bypass == "disable-trigger":
        prefix = [f"ALTER TABLE {t} DISABLE TRIGGER USER" for t in tables]
        suffix = [f"ALTER TABLE {t} ENABLE TRIGGER USER" for t in tables]
    else:
        assert bypass == "none"
        prefix, suffix = [], []
    await pg.execute(*prefix, *statements, *suffix)


# Balances recomputed from the (tampered) postings: invariant 3 holds again afterwards.
RECOMPUTE_BALANCES = (
    "UPDATE ledger_accounts a SET posted = coalesce("
    "(SELECT sum(p.amount) FROM ledger_postings p WHERE p.account_id = a.id), 0)"
)
UNUSED_GCO2E_SHARD = (
    "(SELECT id FROM ledger_accounts WHERE kind = 'issuance' AND asset = 'GCO2E'"
    " AND chain_seq = 0 ORDER BY id DESC LIMIT 1)"
)


def _chain_tamper_cases() -> list[object]:
    tx = "(SELECT min(id) FROM ledger_transactions)"
    grams = f"transaction_id = {tx} AND asset = 'GCO2E'"
    header = f"UPDATE ledger_transactions SET {{}} WHERE id = {tx}"
    cases = [
        (
            "posting-pair-and-balances",
            [f"UPDATE ledger_postings SET amount = amount * 10 WHERE {grams}", RECOMPUTE_BALANCES],
        ),
        ("idempotency-key", [header.format("idempotency_key = 'forged'")]),
        ("origin", [header.format("origin = 'forged'")]),
        ("kind", [header.format("kind = 'refund'")]),
        ("created-at", [header.format("created_at = created_at - interval '1 day'")]),
        (
            "request-reason",
            [header.format("request = jsonb_set(request, '{reason}', '\"forged\"')")],
        ),
        (
            "posting-moved-to-another-account",
            [
                f"UPDATE ledger_postings SET account_id = {UNUSED_GCO2E_SHARD}"
                f" WHERE {grams} AND amount < 0",
                RECOMPUTE_BALANCES,
            ],
        ),
        (
            "posting-chain-hash",
            [
                "UPDATE ledger_postings SET chain_hash = sha256(chain_hash)"
                " WHERE id = (SELECT min(id) FROM ledger_postings)"
            ],
        ),
    ]
    return [
        pytest.param(statements, bypass, id=f"{name}-{bypass}")
        for name, statements in cases
        for bypass in ("replica", "disable-trigger")
    ]


@pytest.mark.parametrize(("statements", "bypass"), _chain_tamper_cases())
async def test_the_hash_chain_reveals_a_forced_rewrite(
    ledger_env: Ledger, pg: Db, history: History, statements: list[str], bypass: str
) -> None:
    before = await pg.snapshot()
    await _tamper(pg, statements, bypass)
    assert await pg.snapshot() != before, "the tamper changed nothing"
    report = await ledger_env.verify()
    # Only the chain sees it: sums, balances, lots and holds all still agree.
    assert {v.invariant for v in report.violations} == {"7 hash chain"}, [
        str(v) for v in report.violations
    ]


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("chain_hash = sha256(chain_hash)", id="head-hash"),
        pytest.param("chain_seq = chain_seq + 1", id="head-seq"),
    ],
)
async def test_a_chain_head_edit_the_guard_allows_is_detected(
    ledger_env: Ledger, pg: Db, history: History, statement: str
) -> None:
    # No bypass needed: heads are state, so ledger_accounts_guard lets them change.
    await _tamper(
        pg, [f"UPDATE ledger_accounts SET {statement} WHERE id = {history.account()}"], "none"
    )
    report = await ledger_env.verify()
    assert {v.invariant for v in report.violations} == {"7 hash chain"}
    assert any("chain ends at seq" in v.detail for v in report.violations), report.violations


async def test_swapped_posting_order_is_detected(
    ledger_env: Ledger, pg: Db, history: History
) -> None:
    # Two statements would collide on the unique (account_id, account_seq): go through -1.
    move = (
        "UPDATE ledger_postings SET account_seq = {new}"
        f" WHERE account_id = {history.account('GCO2E')} AND account_seq = {{old}}"
    )
    await _tamper(
        pg,
        [
            move.format(old=1, new=-1),
            move.format(old=2, new=1),
            move.format(old=-1, new=2),
        ],
        "replica",
    )
    report = await ledger_env.verify()
    assert {v.invariant for v in report.violations} == {"7 hash chain"}
    assert any("hash does not match" in v.detail for v in report.violations), report.violations


async def test_a_whole_earlier_transaction_deleted_is_detected(ledger_env: Ledger, pg: Db) -> None:
    alice = uuid.uuid4()
    first = await ledger_env.credit(alice, 100, grams=100)
    await ledger_env.credit(alice, 40, grams=40)
    tx = first.transaction_id
    await _tamper(
        pg,
        [
            "DELETE FROM ledger_lot_movements WHERE lot_id IN"
            f" (SELECT id FROM ledger_lots WHERE transaction_id = {tx})",
            f"DELETE FROM ledger_lots WHERE transaction_id = {tx}",
            f"DELETE FROM ledger_postings WHERE transaction_id = {tx}",
            f"DELETE FROM ledger_transactions WHERE id = {tx}",
            RECOMPUTE_BALANCES,
        ],
        "disable-trigger",
    )
    report = await ledger_env.verify()
    assert report.transactions == 1
    assert {v.invariant for v in report.violations} == {"7 hash chain"}
    assert any("expected 1" in v.detail for v in report.violations), report.violations


async def test_a_rewrite_with_recomputed_hashes_is_caught_by_a_checkpoint(
    ledger_env: Ledger, pg: Db
) -> None:
    alice = uuid.uuid4()
    await ledger_env.credit(alice, 100, grams=100)
    newest = await ledger_env.credit(alice, 40, grams=40)
    checkpoint = (await ledger_env.verify()).heads

    # A forger who knows the chain rewrites the newest transaction's GCO2E postings and
    # relinks them and the heads: every chain is internally consistent again.
    conn = await asyncpg.connect(pg.dsn)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            tx = await conn.fetchrow(
                "SELECT * FROM ledger_transactions WHERE id = $1", newest.transaction_id
            )
            digest = transaction_digest(
                tx["id"],
                tx["origin"],
                tx["idempotency_key"],
                tx["kind"],
                json.loads(tx["request"]),
                tx["created_at"],
            )
            postings = await conn.fetch(
                "SELECT p.*, a.chain_seq AS head_seq, (SELECT q.chain_hash FROM ledger_postings q"
                " WHERE q.account_id = p.account_id AND q.account_seq = p.account_seq - 1) AS prev"
                " FROM ledger_postings p JOIN ledger_accounts a ON a.id = p.account_id"
                " WHERE p.transaction_id = $1 AND p.asset = 'GCO2E'",
                newest.transaction_id,
            )
            assert len(postings) == 2
            for p in postings:
                assert p["account_seq"] == p["head_seq"]  # the newest link of its chain
                amount = p["amount"] * 10
                relinked = link(
                    bytes(p["prev"]) if p["prev"] is not None else ZERO_HASH,
                    posting_digest(digest, p["account_id"], p["asset"], amount, p["account_seq"]),
                )
                await conn.execute(
                    "UPDATE ledger_postings SET amount = $1, chain_hash = $2 WHERE id = $3",
                    amount,
                    relinked,
                    p["id"],
                )
                await conn.execute(
                    "UPDATE ledger_accounts SET posted = posted + $1, chain_hash = $2"
                    " WHERE id = $3",
                    amount - p["amount"],
                    relinked,
                    p["account_id"],
                )
    finally:
        await conn.close()

    # Verify's documented limit: the database alone cannot reveal this rewrite...
    assert (await ledger_env.verify()).ok
    # ...the heads published before it can.
    report = await verify_ledger(ledger_env.engine, checkpoint=checkpoint)
    assert {v.invariant for v in report.violations} == {"7 hash chain"}
    assert sum("differs from the checkpoint" in v.detail for v in report.violations) == 2
