"""merchants: terminals, api keys, offers, redemptions, idempotency keys

Revision ID: 20261130_0007
Revises: 20261130_0006
Create Date: 2026-11-30 22:45:48.020875
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261130_0007"
down_revision: str | None = "20261130_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "merchants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("region", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('active', 'suspended')", name=op.f("ck_merchants_status_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchants")),
        sa.UniqueConstraint("code", name=op.f("uq_merchants_code")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "locked_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state IN ('in_progress', 'done')", name=op.f("ck_idempotency_keys_state_known")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_idempotency_keys_merchant_id_merchants"),
        ),
        sa.PrimaryKeyConstraint("merchant_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "merchant_terminals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_merchant_terminals_merchant_id_merchants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchant_terminals")),
        sa.UniqueConstraint(
            "merchant_id", "code", name=op.f("uq_merchant_terminals_merchant_id_code")
        ),
    )
    op.create_table(
        "offers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("points_price", sa.BigInteger(), nullable=False),
        sa.Column("face_value_fen", sa.BigInteger(), nullable=False),
        sa.Column("stock", sa.BigInteger(), nullable=True),
        sa.Column("per_user_limit", sa.Integer(), nullable=True),
        sa.Column("region", sa.String(length=16), nullable=True),
        sa.Column("valid_from", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("valid_to", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("face_value_fen >= 0", name=op.f("ck_offers_face_value_non_negative")),
        sa.CheckConstraint(
            "per_user_limit IS NULL OR per_user_limit > 0", name=op.f("ck_offers_limit_positive")
        ),
        sa.CheckConstraint("points_price > 0", name=op.f("ck_offers_price_positive")),
        sa.CheckConstraint(
            "stock IS NULL OR stock >= 0", name=op.f("ck_offers_stock_non_negative")
        ),
        sa.CheckConstraint("valid_to > valid_from", name=op.f("ck_offers_window_ordered")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_offers_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offers")),
    )
    op.create_index(op.f("ix_offers_merchant_id"), "offers", ["merchant_id"], unique=False)
    op.create_table(
        "merchant_api_keys",
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("terminal_id", sa.Uuid(), nullable=True),
        sa.Column("scopes", sa.ARRAY(sa.String(length=32)), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_merchant_api_keys_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["terminal_id"],
            ["merchant_terminals.id"],
            name=op.f("fk_merchant_api_keys_terminal_id_merchant_terminals"),
        ),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_merchant_api_keys")),
    )
    op.create_index(
        op.f("ix_merchant_api_keys_merchant_id"), "merchant_api_keys", ["merchant_id"], unique=False
    )
    op.create_table(
        "redemptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("terminal_id", sa.Uuid(), nullable=True),
        sa.Column("participant_id", sa.Uuid(), nullable=False),
        sa.Column("offer_id", sa.Uuid(), nullable=True),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("hold_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["ledger_holds.id"], name=op.f("fk_redemptions_hold_id_ledger_holds")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_redemptions_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["offer_id"], ["offers.id"], name=op.f("fk_redemptions_offer_id_offers")
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_redemptions_participant_id_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["terminal_id"],
            ["merchant_terminals.id"],
            name=op.f("fk_redemptions_terminal_id_merchant_terminals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemptions")),
        sa.UniqueConstraint("hold_id", name=op.f("uq_redemptions_hold_id")),
    )
    op.create_index(
        "ix_redemptions_merchant_created",
        "redemptions",
        ["merchant_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_redemptions_offer_participant",
        "redemptions",
        ["offer_id", "participant_id"],
        unique=False,
    )
    # A redemption's facts never change; its state is read from the ledger.
    op.execute(
        "CREATE TRIGGER redemptions_append_only BEFORE UPDATE OR DELETE ON redemptions "
        "FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change()"
    )


def downgrade() -> None:
    op.drop_index("ix_redemptions_offer_participant", table_name="redemptions")
    op.drop_index("ix_redemptions_merchant_created", table_name="redemptions")
    op.drop_table("redemptions")
    op.drop_index(op.f("ix_merchant_api_keys_merchant_id"), table_name="merchant_api_keys")
    op.drop_table("merchant_api_keys")
    op.drop_index(op.f("ix_offers_merchant_id"), table_name="offers")
    op.drop_table("offers")
    op.drop_table("merchant_terminals")
    op.drop_table("idempotency_keys")
    op.drop_table("merchants")
