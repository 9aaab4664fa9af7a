"""app: redemption tokens and partner link-token uses

Revision ID: 20261130_0005
Revises: 20261130_0004
Create Date: 2026-11-30 23:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261130_0005"
down_revision: str | None = "20261130_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "redemption_tokens",
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("participant_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("used_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_redemption_tokens_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_redemption_tokens")),
    )
    op.create_index(
        op.f("ix_redemption_tokens_participant_id"),
        "redemption_tokens",
        ["participant_id"],
        unique=False,
    )
    op.create_table(
        "partner_token_uses",
        sa.Column("partner_id", sa.Uuid(), nullable=False),
        sa.Column("token_id", sa.String(length=128), nullable=False),
        sa.Column("participant_id", sa.Uuid(), nullable=False),
        sa.Column(
            "used_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_partner_token_uses_participant_id_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_partner_token_uses_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("partner_id", "token_id", name=op.f("pk_partner_token_uses")),
    )


def downgrade() -> None:
    op.drop_table("partner_token_uses")
    op.drop_index(op.f("ix_redemption_tokens_participant_id"), table_name="redemption_tokens")
    op.drop_table("redemption_tokens")
