"""administrators, the audit trail, methodology drafts

Revision ID: 20261205_0001
Revises: 20261203_0002
Create Date: 2026-12-05 10:00:00

* `admins`: administrators, apart from citizens; roles checked where the data lives.
* `admin_audit_log`: every administrative act, append-only (the ledger's guard function) and
  hash-chained by the application (`service/audit/chain.py`, checked by `audit verify`).
* `methodology_drafts`: a draft's YAML never changes; approval and scheduling are set once,
  and the approver is never the author (four eyes, a CHECK).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261205_0001"
down_revision: str | None = "20261203_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DRAFTS_GUARD = """
CREATE FUNCTION methodology_drafts_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The uploaded document is a fact; approval and scheduling are each given once.
    IF TG_OP = 'DELETE' OR NEW.id <> OLD.id OR NEW.methodology_id <> OLD.methodology_id
        OR NEW.version <> OLD.version OR NEW.action_type <> OLD.action_type
        OR NEW.region IS DISTINCT FROM OLD.region OR NEW.content_hash <> OLD.content_hash
        OR NEW.source_yaml <> OLD.source_yaml OR NEW.author_id <> OLD.author_id
        OR NEW.created_at <> OLD.created_at
        OR (OLD.approved_by IS NOT NULL AND (NEW.approved_by IS DISTINCT FROM OLD.approved_by
            OR NEW.approved_at IS DISTINCT FROM OLD.approved_at))
        OR (OLD.activate_at IS NOT NULL AND NEW.activate_at IS DISTINCT FROM OLD.activate_at)
    THEN
        RAISE EXCEPTION 'a methodology draft''s document, approval and schedule never change'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "admins",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("login", sa.String(length=120), nullable=False),
        sa.Column("display_name", sa.String(length=120), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("roles", sa.ARRAY(sa.String(length=32)), nullable=False),
        sa.Column("totp_salt", sa.LargeBinary(), nullable=False),
        sa.Column("totp_last_step", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("token_generation", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "cardinality(roles) >= 1 AND roles <@ ARRAY['program-admin', 'methodology-author',"
            " 'methodology-approver', 'reviewer', 'auditor']::varchar[]",
            name=op.f("ck_admins_roles_known"),
        ),
        sa.CheckConstraint("status IN ('active', 'disabled')", name=op.f("ck_admins_status_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admins")),
        sa.UniqueConstraint("login", name=op.f("uq_admins_login")),
    )
    op.create_table(
        "admin_audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("occurred_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("admin_id", sa.Uuid(), nullable=True),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=200), nullable=False),
        sa.Column("before_digest", sa.LargeBinary(), nullable=True),
        sa.Column("after_digest", sa.LargeBinary(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column(
            "detail",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("prev_hash", sa.LargeBinary(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["admin_id"], ["admins.id"], name=op.f("fk_admin_audit_log_admin_id_admins")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_audit_log")),
        sa.UniqueConstraint("hash", name=op.f("uq_admin_audit_log_hash")),
    )
    op.create_table(
        "methodology_drafts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("methodology_id", sa.String(length=80), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action_type", sa.String(length=64), nullable=False),
        sa.Column("region", sa.String(length=16), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("source_yaml", sa.Text(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("approved_by", sa.Uuid(), nullable=True),
        sa.Column("approved_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("activate_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.CheckConstraint(
            "approved_by IS NULL OR approved_by <> author_id",
            name=op.f("ck_methodology_drafts_four_eyes"),
        ),
        sa.CheckConstraint(
            "activate_at IS NULL OR approved_at IS NOT NULL",
            name=op.f("ck_methodology_drafts_approved_before_scheduled"),
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["admins.id"], name=op.f("fk_methodology_drafts_author_id_admins")
        ),
        sa.ForeignKeyConstraint(
            ["approved_by"], ["admins.id"], name=op.f("fk_methodology_drafts_approved_by_admins")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_methodology_drafts")),
        sa.UniqueConstraint(
            "methodology_id", "version", name=op.f("uq_methodology_drafts_methodology_id_version")
        ),
    )
    op.execute(
        "CREATE TRIGGER admin_audit_log_append_only BEFORE UPDATE OR DELETE ON admin_audit_log "
        "FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change()"
    )
    op.execute(
        "CREATE TRIGGER admin_audit_log_no_truncate BEFORE TRUNCATE ON admin_audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change()"
    )
    op.execute(DRAFTS_GUARD)
    op.execute(
        "CREATE TRIGGER methodology_drafts_guard BEFORE UPDATE OR DELETE ON methodology_drafts "
        "FOR EACH ROW EXECUTE FUNCTION methodology_drafts_guard()"
    )
    op.execute(
        "CREATE TRIGGER methodology_drafts_no_truncate BEFORE TRUNCATE ON methodology_drafts "
        "FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change()"
    )


def downgrade() -> None:
    op.drop_table("methodology_drafts")
    op.execute("DROP FUNCTION IF EXISTS methodology_drafts_guard() CASCADE")
    op.drop_table("admin_audit_log")
    op.drop_table("admins")
