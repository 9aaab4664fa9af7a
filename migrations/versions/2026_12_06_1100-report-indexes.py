"""block-range indexes for the programme reports' periods

Revision ID: 20261206_0002
Revises: 20261206_0001
Create Date: 2026-12-06 10:00:00

The reports (`service/reports`) read one bounded period of ledger transactions (by
`created_at`), credits (by `occurred_at`) and partner events (by `received_at`). Rows of all
three arrive roughly in time order, so a BRIN index (a summary per block range, a few pages
for millions of rows) narrows a period to its blocks, where a B-tree would cost every insert
on the crediting path a descent. Built CONCURRENTLY: creating them takes no lock that stops
crediting.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261206_0002"
down_revision: str | None = "20261206_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_ledger_transactions_created_at_brin", "ledger_transactions", "created_at"),
    ("ix_credits_occurred_at_brin", "credits", "occurred_at"),
    ("ix_partner_events_received_at_brin", "partner_events", "received_at"),
)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, column in INDEXES:
            op.create_index(
                name,
                table,
                [column],
                postgresql_using="brin",
                postgresql_concurrently=True,
                if_not_exists=True,
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, _column in INDEXES:
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
