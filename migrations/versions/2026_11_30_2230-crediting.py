"""crediting: partners, credentials, identity links, methodology versions, events, credits, cap usage

Revision ID: 20261130_0003
Revises: 20261130_0002
Create Date: 2026-11-30 22:18:34.140117
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261130_0003"
down_revision: str | None = "20261130_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


GUARDS = (
    """
CREATE FUNCTION partner_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The report is a fact; only its outcome moves forward.
    IF TG_OP = 'DELETE' OR NEW.id <> OLD.id OR NEW.partner_id <> OLD.partner_id
        OR NEW.external_id <> OLD.external_id OR NEW.content_hash <> OLD.content_hash
        OR NEW.action_type <> OLD.action_type OR NEW.occurred_at <> OLD.occurred_at
        OR NEW.received_at <> OLD.received_at OR NEW.subject_hash <> OLD.subject_hash
        OR NEW.region IS DISTINCT FROM OLD.region OR NEW.quantities <> OLD.quantities
        OR NEW.place_ids IS DISTINCT FROM OLD.place_ids THEN
        RAISE EXCEPTION 'partner events are append-only: only the outcome may change'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$
""",
    """
CREATE FUNCTION methodology_versions_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A filed version never changes; it may only be given an end to its effective period.
    IF TG_OP = 'DELETE' OR NEW.methodology_id <> OLD.methodology_id
        OR NEW.version <> OLD.version OR NEW.action_type <> OLD.action_type
        OR NEW.region IS DISTINCT FROM OLD.region OR NEW.effective_from <> OLD.effective_from
        OR NEW.content_hash <> OLD.content_hash OR NEW.source_yaml <> OLD.source_yaml
        OR (OLD.effective_to IS NOT NULL AND NEW.effective_to IS DISTINCT FROM OLD.effective_to)
    THEN
        RAISE EXCEPTION 'methodology versions are immutable once filed'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$
""",
    "CREATE TRIGGER partner_events_guard BEFORE UPDATE OR DELETE ON partner_events "
    "FOR EACH ROW EXECUTE FUNCTION partner_events_guard()",
    "CREATE TRIGGER methodology_versions_guard BEFORE UPDATE OR DELETE ON methodology_versions "
    "FOR EACH ROW EXECUTE FUNCTION methodology_versions_guard()",
    "CREATE TRIGGER credits_append_only BEFORE UPDATE OR DELETE ON credits "
    "FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change()",
    "CREATE TRIGGER credits_no_truncate BEFORE TRUNCATE ON credits "
    "FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change()",
)


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("partner_event_outcome_seq")))
    op.create_table(
        "methodology_versions",
        sa.Column("methodology_id", sa.String(length=80), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action_type", sa.String(length=64), nullable=False),
        sa.Column("region", sa.String(length=16), nullable=True),
        sa.Column("effective_from", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("effective_to", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("source_yaml", sa.Text(), nullable=False),
        sa.Column(
            "filed_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("methodology_id", "version", name=op.f("pk_methodology_versions")),
    )
    op.create_index(
        op.f("ix_methodology_versions_action_type"),
        "methodology_versions",
        ["action_type"],
        unique=False,
    )
    op.create_table(
        "partners",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("allowed_action_types", sa.ARRAY(sa.String(length=64)), nullable=False),
        sa.Column("region", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("rate_limit_per_second", sa.Integer(), server_default="2000", nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('transit', 'bikeshare', 'maas', 'utility', 'retail', 'waste')",
            name=op.f("ck_partners_kind_known"),
        ),
        sa.CheckConstraint(
            "status IN ('active', 'suspended')", name=op.f("ck_partners_status_known")
        ),
        sa.CheckConstraint(
            "rate_limit_per_second > 0", name=op.f("ck_partners_rate_limit_positive")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partners")),
        sa.UniqueConstraint("code", name=op.f("uq_partners_code")),
    )
    op.create_table(
        "cap_usage",
        sa.Column("participant_id", sa.Uuid(), nullable=False),
        sa.Column("usage_key", sa.String(length=120), nullable=False),
        sa.Column("grams", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("grams >= 0 AND points >= 0", name=op.f("ck_cap_usage_non_negative")),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_cap_usage_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint("participant_id", "usage_key", name=op.f("pk_cap_usage")),
    )
    op.create_table(
        "identity_links",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("participant_id", sa.Uuid(), nullable=False),
        sa.Column("partner_id", sa.Uuid(), nullable=False),
        sa.Column("subject_hash", sa.LargeBinary(), nullable=False),
        sa.Column(
            "linked_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("unlinked_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_identity_links_participant_id_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_identity_links_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_links")),
    )
    op.create_index(
        op.f("ix_identity_links_participant_id"), "identity_links", ["participant_id"], unique=False
    )
    op.create_index(
        "uq_identity_links_active_subject",
        "identity_links",
        ["partner_id", "subject_hash"],
        unique=True,
        postgresql_where=sa.text("unlinked_at IS NULL"),
    )
    op.create_table(
        "partner_credentials",
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("partner_id", sa.Uuid(), nullable=False),
        sa.Column("salt", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("revoked_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_partner_credentials_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_partner_credentials")),
    )
    op.create_index(
        op.f("ix_partner_credentials_partner_id"),
        "partner_credentials",
        ["partner_id"],
        unique=False,
    )
    op.create_table(
        "partner_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("partner_id", sa.Uuid(), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("content_hash", sa.LargeBinary(), nullable=False),
        sa.Column("action_type", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("received_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("subject_hash", sa.LargeBinary(), nullable=False),
        sa.Column("region", sa.String(length=16), nullable=True),
        sa.Column("quantities", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("place_ids", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "outcome_seq",
            sa.BigInteger(),
            server_default=sa.text("nextval('partner_event_outcome_seq')"),
            nullable=False,
        ),
        sa.Column("participant_id", sa.Uuid(), nullable=True),
        sa.Column("methodology_id", sa.String(length=80), nullable=True),
        sa.Column("methodology_version", sa.Integer(), nullable=True),
        sa.Column("grams", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("points", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reasons", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("duplicate_of", sa.BigInteger(), nullable=True),
        sa.Column("credit_transaction_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "status IN ('received', 'pending', 'credited', 'capped', 'ineligible', 'implausible', 'expired', 'duplicate', 'retracted')",
            name=op.f("ck_partner_events_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["credit_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_partner_events_credit_transaction_id_ledger_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["duplicate_of"],
            ["partner_events.id"],
            name=op.f("fk_partner_events_duplicate_of_partner_events"),
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_partner_events_participant_id_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_partner_events_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partner_events")),
        sa.UniqueConstraint(
            "partner_id", "external_id", name=op.f("uq_partner_events_partner_id_external_id")
        ),
    )
    op.create_index(
        "ix_partner_events_outcome_cursor",
        "partner_events",
        ["partner_id", "outcome_seq"],
        unique=False,
    )
    op.create_index(
        "ix_partner_events_pending_subject",
        "partner_events",
        ["partner_id", "subject_hash"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "credits",
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("participant_id", sa.Uuid(), nullable=False),
        sa.Column("partner_id", sa.Uuid(), nullable=False),
        sa.Column("action_type", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("received_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("region", sa.String(length=16), nullable=True),
        sa.Column("methodology_id", sa.String(length=80), nullable=False),
        sa.Column("methodology_version", sa.Integer(), nullable=False),
        sa.Column("inputs", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("usage_before", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("grams", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["partner_events.id"], name=op.f("fk_credits_event_id_partner_events")
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_credits_participant_id_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_credits_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_credits_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_credits")),
    )
    op.create_index(
        "ix_credits_dedup",
        "credits",
        ["participant_id", "action_type", "occurred_at"],
        unique=False,
    )
    for statement in GUARDS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS partner_events_guard() CASCADE")
    op.execute("DROP FUNCTION IF EXISTS methodology_versions_guard() CASCADE")
    op.drop_index("ix_credits_dedup", table_name="credits")
    op.drop_table("credits")
    op.drop_index(
        "ix_partner_events_pending_subject",
        table_name="partner_events",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("ix_partner_events_outcome_cursor", table_name="partner_events")
    op.drop_table("partner_events")
    op.drop_index(op.f("ix_partner_credentials_partner_id"), table_name="partner_credentials")
    op.drop_table("partner_credentials")
    op.drop_index(
        "uq_identity_links_active_subject",
        table_name="identity_links",
        postgresql_where=sa.text("unlinked_at IS NULL"),
    )
    op.drop_index(op.f("ix_identity_links_participant_id"), table_name="identity_links")
    op.drop_table("identity_links")
    op.drop_table("cap_usage")
    op.drop_table("partners")
    op.drop_index(op.f("ix_methodology_versions_action_type"), table_name="methodology_versions")
    op.drop_table("methodology_versions")
    op.execute(sa.schema.DropSequence(sa.Sequence("partner_event_outcome_seq")))
