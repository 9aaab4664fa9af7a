"""ledger: zero-sum checked once per statement, not once per posting row at commit

Revision ID: 20261203_0001
Revises: 20261130_0007
Create Date: 2026-12-03 10:00:00

The deferred constraint trigger on `ledger_postings` ran a two-query PL/pgSQL check once per
posting row at commit: 2,000 checks for a batch of 500 credits. It becomes one statement-level
AFTER INSERT trigger over the transition table: every transaction touched by the statement
must sum to zero per asset over all its postings (a single non-zero posting cannot). Every
ledger operation writes all of a transaction's postings in one statement, so the invariant
holds after every statement, not only at commit, and postings are append-only, so it holds
for good.

What a per-statement check cannot see is a transaction row that never gets a posting; the
deferred per-transaction trigger stays for that, reduced to one index probe.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261203_0001"
down_revision: str | None = "20261130_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


UPGRADE = (
    "DROP TRIGGER ledger_postings_balanced ON ledger_postings",
    "DROP TRIGGER ledger_transactions_balanced ON ledger_transactions",
    """
CREATE FUNCTION ledger_postings_balanced_statement() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    -- LATERAL: one index probe per touched transaction, whatever the planner thinks of the
    -- transition table's size.
    SELECT t.transaction_id, s.asset, s.total INTO bad
    FROM (SELECT DISTINCT transaction_id FROM new_postings) AS t
    CROSS JOIN LATERAL (
        SELECT p.asset, sum(p.amount) AS total FROM ledger_postings p
        WHERE p.transaction_id = t.transaction_id GROUP BY p.asset
    ) AS s
    WHERE s.total <> 0
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % does not sum to zero: % %',
            bad.transaction_id, bad.asset, bad.total USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$
""",
    "CREATE TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings "
    "REFERENCING NEW TABLE AS new_postings FOR EACH STATEMENT "
    "EXECUTE FUNCTION ledger_postings_balanced_statement()",
    """
CREATE FUNCTION ledger_transaction_has_postings_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Balanced is checked per statement; an empty transaction is the one case left.
    IF NOT EXISTS (SELECT 1 FROM ledger_postings WHERE transaction_id = NEW.id) THEN
        RAISE EXCEPTION 'ledger transaction % has no postings; at least two are required',
            NEW.id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$
""",
    "CREATE CONSTRAINT TRIGGER ledger_transactions_balanced AFTER INSERT "
    "ON ledger_transactions DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
    "EXECUTE FUNCTION ledger_transaction_has_postings_trigger()",
)

DOWNGRADE = (
    "DROP TRIGGER ledger_postings_balanced ON ledger_postings",
    "DROP TRIGGER ledger_transactions_balanced ON ledger_transactions",
    "DROP FUNCTION ledger_postings_balanced_statement()",
    "DROP FUNCTION ledger_transaction_has_postings_trigger()",
    "CREATE CONSTRAINT TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
    "EXECUTE FUNCTION ledger_posting_balanced_trigger()",
    "CREATE CONSTRAINT TRIGGER ledger_transactions_balanced AFTER INSERT "
    "ON ledger_transactions DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
    "EXECUTE FUNCTION ledger_transaction_balanced_trigger()",
)


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
