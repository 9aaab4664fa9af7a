"""the review queue: flag rules and flagged credits

Revision ID: 20261208_0001
Revises: 20261207_0001
Create Date: 2026-12-07 10:00:00

An expand step: two new tables (`review_rules`, `review_flags`), owned by `service/review`.
The rules are seeded switched off with their default thresholds, so a release that ships
them changes nothing until an administrator turns a rule on (`PUT /v1/admin/review/rules/..`).
The hold on a flagged credit's points is an ordinary ledger hold (no ledger schema change).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261208_0001"
down_revision: str | None = "20261207_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULTS = {
    "velocity": {
        "window_minutes": 60,
        "max_trips": 8,
        "action_types": ["transit.bus", "transit.metro", "mobility.bikeshare"],
    },
    "overlap": {
        "tolerance_seconds": 60,
        "action_types": ["transit.bus", "transit.metro", "mobility.bikeshare"],
    },
    "travel": {
        "min_minutes_between_regions": 60,
        "action_types": ["transit.bus", "transit.metro", "mobility.bikeshare"],
    },
    "identity_churn": {"window_days": 30, "max_participants": 2},
    "partner_volume": {
        "multiplier_percent": 500,
        "min_events_per_hour": 500,
        "baseline_hours": 168,
    },
}


def upgrade() -> None:
    rules = op.create_table(
        "review_rules",
        sa.Column("rule", sa.String(32), primary_key=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("params", postgresql.JSONB(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("updated_by", sa.Uuid(), nullable=True),
    )
    op.bulk_insert(
        rules,
        [{"rule": rule, "enabled": False, "params": params} for rule, params in DEFAULTS.items()],
    )
    op.create_table(
        "review_flags",
        sa.Column("event_id", sa.BigInteger(), primary_key=True),
        sa.Column("participant_id", sa.Uuid(), nullable=False),
        sa.Column("partner_id", sa.Uuid(), nullable=False),
        sa.Column("action_type", sa.String(64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rules", postgresql.ARRAY(sa.String(32)), nullable=False),
        sa.Column("details", postgresql.JSONB(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("grams", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), server_default="open", nullable=False),
        sa.Column("assignee", sa.Uuid(), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.Uuid(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'approved', 'rejected')", name=op.f("ck_review_flags_status_known")
        ),
        sa.CheckConstraint("cardinality(rules) >= 1", name=op.f("ck_review_flags_has_rules")),
        sa.CheckConstraint(
            "(status = 'open') = (decided_at IS NULL)",
            name=op.f("ck_review_flags_decided_iff_not_open"),
        ),
        sa.CheckConstraint(
            "status <> 'rejected' OR reason IS NOT NULL",
            name=op.f("ck_review_flags_rejection_has_reason"),
        ),
    )
    op.create_index("ix_review_flags_status_event", "review_flags", ["status", "event_id"])
    op.create_index("ix_review_flags_participant", "review_flags", ["participant_id", "status"])
    op.create_index("ix_review_flags_partner", "review_flags", ["partner_id", "event_id"])
    op.create_index(
        "ix_review_flags_flagged_at_brin", "review_flags", ["flagged_at"], postgresql_using="brin"
    )


def downgrade() -> None:
    op.drop_table("review_flags")
    op.drop_table("review_rules")
