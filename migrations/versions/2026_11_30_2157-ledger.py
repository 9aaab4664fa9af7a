"""ledger: accounts, transactions, postings, lots, holds

Revision ID: 20261130_0002
Revises: 20261130_0001
Create Date: 2026-11-30 21:57:54

Besides the tables: append-only triggers on every fact table, deferred constraint
triggers that reject a transaction whose postings do not sum to zero per asset
(or that has fewer than two), triggers that let only balances, chain heads and
lot remainders change, and the program's own accounts: 64 issuance shards per
asset, so concurrent credits rarely queue on one hot balance row, and the expiry
account.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261130_0002"
down_revision: str | None = "20261130_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


APPEND_ONLY_TABLES = (
    "ledger_transactions",
    "ledger_postings",
    "ledger_lot_movements",
    "ledger_holds",
    "ledger_hold_resolutions",
)

FUNCTIONS = (
    """
CREATE FUNCTION ledger_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$
""",
    """
CREATE FUNCTION ledger_assert_balanced(tx bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    postings integer;
    unbalanced text;
BEGIN
    SELECT count(*) INTO postings FROM ledger_postings WHERE transaction_id = tx;
    IF postings < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has % posting(s); at least two are required',
            tx, postings USING ERRCODE = 'check_violation';
    END IF;
    SELECT string_agg(asset || ' ' || total, ', ') INTO unbalanced FROM (
        SELECT asset, sum(amount) AS total FROM ledger_postings
        WHERE transaction_id = tx GROUP BY asset HAVING sum(amount) <> 0
    ) AS sums;
    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % does not sum to zero: %', tx, unbalanced
            USING ERRCODE = 'check_violation';
    END IF;
END $$
""",
    """
CREATE FUNCTION ledger_posting_balanced_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_assert_balanced(NEW.transaction_id);
    RETURN NULL;
END $$
""",
    """
CREATE FUNCTION ledger_transaction_balanced_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_assert_balanced(NEW.id);
    RETURN NULL;
END $$
""",
)

MATERIALISED_GUARDS = (
    """
CREATE FUNCTION ledger_lots_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Only the remainder of a lot is state; what it was, whose, and when it expires are facts.
    IF TG_OP = 'DELETE' OR NEW.id <> OLD.id OR NEW.account_id <> OLD.account_id
        OR NEW.transaction_id <> OLD.transaction_id OR NEW.amount <> OLD.amount
        OR NEW.expires_at <> OLD.expires_at THEN
        RAISE EXCEPTION 'ledger rows are append-only: only ledger_lots.remaining may change'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$
""",
    """
CREATE FUNCTION ledger_accounts_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.id <> OLD.id OR NEW.code <> OLD.code
        OR NEW.owner_type <> OLD.owner_type OR NEW.owner_id IS DISTINCT FROM OLD.owner_id
        OR NEW.asset <> OLD.asset OR NEW.kind <> OLD.kind OR NEW.bounded <> OLD.bounded THEN
        RAISE EXCEPTION 'ledger rows are append-only: only balances and chain heads may change'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$
""",
    "CREATE TRIGGER ledger_lots_guard BEFORE UPDATE OR DELETE ON ledger_lots "
    "FOR EACH ROW EXECUTE FUNCTION ledger_lots_guard()",
    "CREATE TRIGGER ledger_accounts_guard BEFORE UPDATE OR DELETE ON ledger_accounts "
    "FOR EACH ROW EXECUTE FUNCTION ledger_accounts_guard()",
    "CREATE TRIGGER ledger_lots_no_truncate BEFORE TRUNCATE ON ledger_lots "
    "FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change()",
    "CREATE TRIGGER ledger_accounts_no_truncate BEFORE TRUNCATE ON ledger_accounts "
    "FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change()",
)

DROP_FUNCTIONS = (
    "DROP FUNCTION IF EXISTS ledger_accounts_guard() CASCADE",
    "DROP FUNCTION IF EXISTS ledger_lots_guard() CASCADE",
    "DROP FUNCTION IF EXISTS ledger_transaction_balanced_trigger() CASCADE",
    "DROP FUNCTION IF EXISTS ledger_posting_balanced_trigger() CASCADE",
    "DROP FUNCTION IF EXISTS ledger_assert_balanced(bigint) CASCADE",
    "DROP FUNCTION IF EXISTS ledger_forbid_change() CASCADE",
)

SYSTEM_ACCOUNTS = (
    """
INSERT INTO ledger_accounts (code, owner_type, asset, kind, bounded)
SELECT 'program:issuance:' || asset || ':' || lpad(shard::text, 2, '0'),
       'program', asset, 'issuance', false
FROM unnest(ARRAY['POINTS', 'GCO2E', 'DEBT']) AS asset, generate_series(0, 63) AS shard
""",
    """
INSERT INTO ledger_accounts (code, owner_type, asset, kind, bounded)
VALUES ('program:expiry:POINTS', 'program', 'POINTS', 'expiry', false)
""",
)


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("code", sa.String(length=120), nullable=False),
        sa.Column("owner_type", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("asset", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("bounded", sa.Boolean(), nullable=False),
        sa.Column("posted", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("held", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("chain_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "chain_hash",
            sa.LargeBinary(),
            server_default=sa.text(
                "'\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea"
            ),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "asset IN ('POINTS', 'GCO2E', 'DEBT')", name=op.f("ck_ledger_accounts_asset")
        ),
        sa.CheckConstraint(
            "kind IN ('participant', 'issuance', 'settlement', 'expiry')",
            name=op.f("ck_ledger_accounts_kind_known"),
        ),
        sa.CheckConstraint(
            "owner_type IN ('participant', 'merchant', 'program')",
            name=op.f("ck_ledger_accounts_owner"),
        ),
        sa.CheckConstraint(
            "NOT bounded OR posted - held >= 0",
            name=op.f("ck_ledger_accounts_available_non_negative"),
        ),
        sa.CheckConstraint(
            "chain_seq >= 0", name=op.f("ck_ledger_accounts_chain_seq_non_negative")
        ),
        sa.CheckConstraint("held >= 0", name=op.f("ck_ledger_accounts_held_non_negative")),
        sa.CheckConstraint(
            "octet_length(chain_hash) = 32", name=op.f("ck_ledger_accounts_chain_hash_length")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("code", name=op.f("uq_ledger_accounts_code")),
    )
    op.create_table(
        "ledger_transactions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("origin", sa.String(length=80), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("request", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('credit', 'reversal', 'redemption', 'refund', 'expiry', 'debt_payment')",
            name=op.f("ck_ledger_transactions_kind_known"),
        ),
        sa.CheckConstraint(
            "length(idempotency_key) BETWEEN 1 AND 200",
            name=op.f("ck_ledger_transactions_key_length"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transactions")),
        sa.UniqueConstraint(
            "origin", "idempotency_key", name=op.f("uq_ledger_transactions_origin_idempotency_key")
        ),
    )
    op.create_index(
        "ix_ledger_transactions_refund_of",
        "ledger_transactions",
        [sa.literal_column("(request ->> 'refund_of')")],
        unique=False,
        postgresql_where=sa.text("kind = 'refund'"),
    )
    op.create_index(
        "uq_ledger_transactions_one_reversal_per_credit",
        "ledger_transactions",
        [sa.literal_column("(request ->> 'reverses')")],
        unique=True,
        postgresql_where=sa.text("kind = 'reversal'"),
    )
    op.create_table(
        "ledger_holds",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("origin", sa.String(length=80), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("request", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("counter_account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_holds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_holds_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["counter_account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_holds_counter_account_id_ledger_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_holds")),
        sa.UniqueConstraint(
            "origin", "idempotency_key", name=op.f("uq_ledger_holds_origin_idempotency_key")
        ),
    )
    op.create_index(
        op.f("ix_ledger_holds_expires_at"), "ledger_holds", ["expires_at"], unique=False
    )
    op.create_table(
        "ledger_lots",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_lots_amount_positive")),
        sa.CheckConstraint(
            "remaining >= 0 AND remaining <= amount", name=op.f("ck_ledger_lots_remaining_in_range")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_lots_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_lots_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_lots")),
    )
    op.create_index(
        "ix_ledger_lots_open_by_account",
        "ledger_lots",
        ["account_id", "expires_at", "id"],
        unique=False,
        postgresql_where=sa.text("remaining > 0"),
    )
    op.create_index(
        "ix_ledger_lots_open_by_expiry",
        "ledger_lots",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("remaining > 0"),
    )
    op.create_index(
        op.f("ix_ledger_lots_transaction_id"), "ledger_lots", ["transaction_id"], unique=False
    )
    op.create_table(
        "ledger_postings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("asset", sa.String(length=8), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("account_seq", sa.BigInteger(), nullable=False),
        sa.Column("chain_hash", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_ledger_postings_amount_non_zero")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_postings_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_postings_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_postings")),
        sa.UniqueConstraint(
            "account_id", "account_seq", name=op.f("uq_ledger_postings_account_id_account_seq")
        ),
    )
    op.create_index(
        op.f("ix_ledger_postings_transaction_id"),
        "ledger_postings",
        ["transaction_id"],
        unique=False,
    )
    op.create_table(
        "ledger_hold_resolutions",
        sa.Column("hold_id", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("amount_posted", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("origin", sa.String(length=80), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("request", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(outcome = 'posted') = (transaction_id IS NOT NULL AND amount_posted > 0)",
            name=op.f("ck_ledger_hold_resolutions_posted_has_transaction"),
        ),
        sa.CheckConstraint(
            "outcome IN ('posted', 'voided', 'expired')",
            name=op.f("ck_ledger_hold_resolutions_outcome_known"),
        ),
        sa.CheckConstraint(
            "amount_posted >= 0", name=op.f("ck_ledger_hold_resolutions_amount_posted_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"],
            ["ledger_holds.id"],
            name=op.f("fk_ledger_hold_resolutions_hold_id_ledger_holds"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_hold_resolutions_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("hold_id", name=op.f("pk_ledger_hold_resolutions")),
        sa.UniqueConstraint(
            "origin",
            "idempotency_key",
            name=op.f("uq_ledger_hold_resolutions_origin_idempotency_key"),
        ),
    )
    op.create_table(
        "ledger_lot_movements",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("lot_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("hold_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('open', 'hold', 'release', 'refund', 'expire', 'reverse', 'debt')",
            name=op.f("ck_ledger_lot_movements_kind_known"),
        ),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_ledger_lot_movements_amount_non_zero")),
        sa.CheckConstraint(
            "transaction_id IS NOT NULL OR hold_id IS NOT NULL",
            name=op.f("ck_ledger_lot_movements_has_cause"),
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"],
            ["ledger_holds.id"],
            name=op.f("fk_ledger_lot_movements_hold_id_ledger_holds"),
        ),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["ledger_lots.id"], name=op.f("fk_ledger_lot_movements_lot_id_ledger_lots")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_lot_movements_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_lot_movements")),
    )
    op.create_index(
        op.f("ix_ledger_lot_movements_hold_id"), "ledger_lot_movements", ["hold_id"], unique=False
    )
    op.create_index(
        op.f("ix_ledger_lot_movements_lot_id"), "ledger_lot_movements", ["lot_id"], unique=False
    )
    op.create_index(
        op.f("ix_ledger_lot_movements_transaction_id"),
        "ledger_lot_movements",
        ["transaction_id"],
        unique=False,
    )
    for statement in FUNCTIONS:
        op.execute(statement)
    for table in APPEND_ONLY_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change()"
        )
    op.execute(
        "CREATE CONSTRAINT TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
        "EXECUTE FUNCTION ledger_posting_balanced_trigger()"
    )
    op.execute(
        "CREATE CONSTRAINT TRIGGER ledger_transactions_balanced AFTER INSERT "
        "ON ledger_transactions DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
        "EXECUTE FUNCTION ledger_transaction_balanced_trigger()"
    )
    for statement in MATERIALISED_GUARDS:
        op.execute(statement)
    for statement in SYSTEM_ACCOUNTS:
        op.execute(statement)


def downgrade() -> None:
    for statement in DROP_FUNCTIONS:
        op.execute(statement)
    op.drop_index(op.f("ix_ledger_lot_movements_transaction_id"), table_name="ledger_lot_movements")
    op.drop_index(op.f("ix_ledger_lot_movements_lot_id"), table_name="ledger_lot_movements")
    op.drop_index(op.f("ix_ledger_lot_movements_hold_id"), table_name="ledger_lot_movements")
    op.drop_table("ledger_lot_movements")
    op.drop_table("ledger_hold_resolutions")
    op.drop_index(op.f("ix_ledger_postings_transaction_id"), table_name="ledger_postings")
    op.drop_table("ledger_postings")
    op.drop_index(op.f("ix_ledger_lots_transaction_id"), table_name="ledger_lots")
    op.drop_index(
        "ix_ledger_lots_open_by_expiry",
        table_name="ledger_lots",
        postgresql_where=sa.text("remaining > 0"),
    )
    op.drop_index(
        "ix_ledger_lots_open_by_account",
        table_name="ledger_lots",
        postgresql_where=sa.text("remaining > 0"),
    )
    op.drop_table("ledger_lots")
    op.drop_index(op.f("ix_ledger_holds_expires_at"), table_name="ledger_holds")
    op.drop_table("ledger_holds")
    op.drop_index(
        "uq_ledger_transactions_one_reversal_per_credit",
        table_name="ledger_transactions",
        postgresql_where=sa.text("kind = 'reversal'"),
    )
    op.drop_index(
        "ix_ledger_transactions_refund_of",
        table_name="ledger_transactions",
        postgresql_where=sa.text("kind = 'refund'"),
    )
    op.drop_table("ledger_transactions")
    op.drop_table("ledger_accounts")
