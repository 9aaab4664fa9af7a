"""an index on every identity link of a partner subject, linked or not

Revision ID: 20261208_0002
Revises: 20261208_0001
Create Date: 2026-12-07 11:00:00

The identity-churn flag rule counts the participants who linked one partner identity
(card, account) lately, unlinked ones included; the unique index covers only the linked
ones. Built CONCURRENTLY: it takes no lock that stops linking or crediting. An expand step.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261208_0002"
down_revision: str | None = "20261208_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_identity_links_subject_history",
            "identity_links",
            ["partner_id", "subject_hash"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_identity_links_subject_history",
            table_name="identity_links",
            postgresql_concurrently=True,
            if_exists=True,
        )
