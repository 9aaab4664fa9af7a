"""certified reductions: pools, batches with serials, blocks, retirements; the ledger's pools

Revision ID: 20261207_0001
Revises: 20261206_0002
Create Date: 2026-12-07 10:00:00

Expand only (issue 18). The ledger learns a `pool` account kind, a `pooling` transaction kind
and `ledger_pooled_credits` (which credit's grams are in which pool account: a reversal of a
pooled credit takes them from there). The two CHECKs are loosened by adding the new one
`NOT VALID` and validating it, which scans without blocking writes, then dropping the old.
The reductions domain gets its own tables.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261207_0001"
down_revision: str | None = "20261206_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACCOUNT_KINDS_OLD = "kind IN ('participant', 'issuance', 'settlement', 'expiry')"
ACCOUNT_KINDS_NEW = "kind IN ('participant', 'issuance', 'settlement', 'expiry', 'pool')"
TX_KINDS_OLD = "kind IN ('credit', 'reversal', 'redemption', 'refund', 'expiry', 'debt_payment')"
TX_KINDS_NEW = (
    "kind IN ('credit', 'reversal', 'redemption', 'refund', 'expiry', 'debt_payment', 'pooling')"
)


def _swap_check(table: str, name: str, condition: str) -> None:
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name}_next CHECK ({condition}) NOT VALID")
    op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}_next")
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {name}_next TO {name}")


def upgrade() -> None:
    _swap_check("ledger_accounts", "ck_ledger_accounts_kind_known", ACCOUNT_KINDS_NEW)
    _swap_check("ledger_transactions", "ck_ledger_transactions_kind_known", TX_KINDS_NEW)

    op.create_table(
        "ledger_pooled_credits",
        sa.Column("credit_transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("pooling_transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("pool_account_id", sa.BigInteger(), nullable=False),
        sa.Column("grams", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("grams > 0", name=op.f("ck_ledger_pooled_credits_grams_positive")),
        sa.ForeignKeyConstraint(
            ["credit_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_pooled_credits_credit_transaction_id_ledger_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["pooling_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_pooled_credits_pooling_transaction_id_ledger_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["pool_account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_pooled_credits_pool_account_id_ledger_accounts"),
        ),
        sa.PrimaryKeyConstraint("credit_transaction_id", name=op.f("pk_ledger_pooled_credits")),
    )
    op.create_index(
        op.f("ix_ledger_pooled_credits_pooling_transaction_id"),
        "ledger_pooled_credits",
        ["pooling_transaction_id"],
    )
    op.create_index(
        op.f("ix_ledger_pooled_credits_pool_account_id"),
        "ledger_pooled_credits",
        ["pool_account_id"],
    )
    op.execute(
        "CREATE TRIGGER ledger_pooled_credits_append_only BEFORE UPDATE OR DELETE "
        "ON ledger_pooled_credits FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change()"
    )
    op.execute(
        "CREATE TRIGGER ledger_pooled_credits_no_truncate BEFORE TRUNCATE "
        "ON ledger_pooled_credits FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change()"
    )

    op.create_table(
        "reduction_pools",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("methodology_id", sa.String(length=80), nullable=False),
        sa.Column("version_min", sa.Integer(), nullable=False),
        sa.Column("version_max", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(length=16), nullable=False),
        sa.Column("vintage", sa.String(length=8), nullable=False),
        sa.Column("vintage_start", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("vintage_end", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("min_grams", sa.BigInteger(), nullable=False),
        sa.Column("settle_hours", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "version_min >= 1 AND version_max >= version_min",
            name=op.f("ck_reduction_pools_versions"),
        ),
        sa.CheckConstraint(
            "vintage_end > vintage_start", name=op.f("ck_reduction_pools_vintage_period")
        ),
        sa.CheckConstraint(
            "min_grams >= 1000 AND min_grams % 1000 = 0",
            name=op.f("ck_reduction_pools_min_whole_kg"),
        ),
        sa.CheckConstraint(
            "settle_hours >= 0", name=op.f("ck_reduction_pools_settle_non_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reduction_pools")),
        sa.UniqueConstraint("code", name=op.f("uq_reduction_pools_code")),
    )
    op.create_table(
        "reduction_batches",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("pool_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("opening_grams", sa.BigInteger(), nullable=False),
        sa.Column("pooled_grams", sa.BigInteger(), nullable=False),
        sa.Column("issued_grams", sa.BigInteger(), nullable=False),
        sa.Column("closing_grams", sa.BigInteger(), nullable=False),
        sa.Column("serial_first", sa.BigInteger(), nullable=False),
        sa.Column("serial_last", sa.BigInteger(), nullable=False),
        sa.Column("credits_count", sa.Integer(), nullable=False),
        sa.Column("credits_hash", sa.LargeBinary(), nullable=False),
        sa.Column("ledger_transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("issued_by", sa.Uuid(), nullable=True),
        sa.Column(
            "issued_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("pooled_grams > 0", name=op.f("ck_reduction_batches_pooled_positive")),
        sa.CheckConstraint(
            "issued_grams > 0 AND issued_grams % 1000 = 0",
            name=op.f("ck_reduction_batches_issued_whole_kilograms"),
        ),
        sa.CheckConstraint(
            "closing_grams >= 0 AND closing_grams < 1000",
            name=op.f("ck_reduction_batches_closing_carry"),
        ),
        sa.CheckConstraint(
            "opening_grams + pooled_grams - issued_grams = closing_grams",
            name=op.f("ck_reduction_batches_position_balances"),
        ),
        sa.CheckConstraint(
            "serial_first >= 1 AND (serial_last - serial_first + 1) * 1000 = issued_grams",
            name=op.f("ck_reduction_batches_serials_cover_issued"),
        ),
        sa.CheckConstraint(
            "octet_length(credits_hash) = 32",
            name=op.f("ck_reduction_batches_credits_hash_length"),
        ),
        postgresql.ExcludeConstraint(
            (sa.text("int8range(serial_first, serial_last, '[]')"), "&&"),
            using="gist",
            name="reduction_batches_serials_disjoint",
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["reduction_pools.id"],
            name=op.f("fk_reduction_batches_pool_id_reduction_pools"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reduction_batches")),
        sa.UniqueConstraint("pool_id", "seq", name=op.f("uq_reduction_batches_pool_id_seq")),
    )
    op.create_table(
        "reduction_batch_credits",
        sa.Column("credit_event_id", sa.BigInteger(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("credit_transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("grams", sa.BigInteger(), nullable=False),
        sa.Column("action_type", sa.String(length=64), nullable=False),
        sa.Column("methodology_version", sa.Integer(), nullable=False),
        sa.CheckConstraint("grams > 0", name=op.f("ck_reduction_batch_credits_grams_positive")),
        sa.ForeignKeyConstraint(
            ["credit_event_id"],
            ["credits.event_id"],
            name=op.f("fk_reduction_batch_credits_credit_event_id_credits"),
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["reduction_batches.id"],
            name=op.f("fk_reduction_batch_credits_batch_id_reduction_batches"),
        ),
        sa.PrimaryKeyConstraint("credit_event_id", name=op.f("pk_reduction_batch_credits")),
    )
    op.create_index(
        op.f("ix_reduction_batch_credits_batch_id"), "reduction_batch_credits", ["batch_id"]
    )
    op.create_table(
        "reduction_holders",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reduction_holders")),
        sa.UniqueConstraint("code", name=op.f("uq_reduction_holders_code")),
    )
    op.create_table(
        "reduction_blocks",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("serial_first", sa.BigInteger(), nullable=False),
        sa.Column("serial_last", sa.BigInteger(), nullable=False),
        sa.Column("holder_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "serial_last >= serial_first", name=op.f("ck_reduction_blocks_serials_ordered")
        ),
        sa.CheckConstraint(
            "status IN ('active', 'split', 'retired')",
            name=op.f("ck_reduction_blocks_status_known"),
        ),
        postgresql.ExcludeConstraint(
            (sa.text("int8range(serial_first, serial_last, '[]')"), "&&"),
            using="gist",
            where=sa.text("status <> 'split'"),
            name="reduction_blocks_live_serials_disjoint",
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["reduction_batches.id"],
            name=op.f("fk_reduction_blocks_batch_id_reduction_batches"),
        ),
        sa.ForeignKeyConstraint(
            ["holder_id"],
            ["reduction_holders.id"],
            name=op.f("fk_reduction_blocks_holder_id_reduction_holders"),
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["reduction_blocks.id"],
            name=op.f("fk_reduction_blocks_parent_id_reduction_blocks"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reduction_blocks")),
    )
    op.create_index(op.f("ix_reduction_blocks_batch_id"), "reduction_blocks", ["batch_id"])
    op.create_index(op.f("ix_reduction_blocks_parent_id"), "reduction_blocks", ["parent_id"])
    op.create_table(
        "reduction_retirements",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("block_id", sa.BigInteger(), nullable=False),
        sa.Column("holder_id", sa.BigInteger(), nullable=True),
        sa.Column("beneficiary", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("retired_by", sa.Uuid(), nullable=True),
        sa.Column(
            "retired_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["block_id"],
            ["reduction_blocks.id"],
            name=op.f("fk_reduction_retirements_block_id_reduction_blocks"),
        ),
        sa.ForeignKeyConstraint(
            ["holder_id"],
            ["reduction_holders.id"],
            name=op.f("fk_reduction_retirements_holder_id_reduction_holders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reduction_retirements")),
        sa.UniqueConstraint("block_id", name=op.f("uq_reduction_retirements_block_id")),
    )


def downgrade() -> None:
    op.drop_table("reduction_retirements")
    op.drop_table("reduction_blocks")
    op.drop_table("reduction_holders")
    op.drop_table("reduction_batch_credits")
    op.drop_table("reduction_batches")
    op.drop_table("reduction_pools")
    op.drop_table("ledger_pooled_credits")
    op.execute("DELETE FROM ledger_accounts WHERE kind = 'pool'")
    _swap_check("ledger_transactions", "ck_ledger_transactions_kind_known", TX_KINDS_OLD)
    _swap_check("ledger_accounts", "ck_ledger_accounts_kind_known", ACCOUNT_KINDS_OLD)
