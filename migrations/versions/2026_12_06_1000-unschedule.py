"""an approved schedule can be undone before its instant

Revision ID: 20261206_0001
Revises: 20261205_0001
Create Date: 2026-12-06 10:00:00

* `methodology_drafts.closes_methodology_id`, `closes_version`: the version whose open period
  the schedule closed at `activate_at` (NULL when it closed none), so that undoing the schedule
  reopens exactly that one. Filled for schedules made before this migration from their audit
  entries (`detail.closes`, written as "<id> v<version>").
* The guards: a filed version may be removed, and a closed period reopened, only while the
  instant is still in the future (nothing can have been credited under it yet); a draft's
  schedule may be withdrawn only then too. Everything else stays as immutable as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261206_0001"
down_revision: str | None = "20261205_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VERSIONS_GUARD = """
CREATE OR REPLACE FUNCTION methodology_versions_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A filed version never changes; it may be given an end to its effective period. Before
    -- its period starts (an undone schedule) it may be removed, and a closing still to come
    -- may be withdrawn: nothing has been credited on either side of that instant yet.
    IF TG_OP = 'DELETE' THEN
        IF OLD.effective_from <= now() THEN
            RAISE EXCEPTION 'methodology versions are immutable once filed: one in force is never removed'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF NEW.methodology_id <> OLD.methodology_id
        OR NEW.version <> OLD.version OR NEW.action_type <> OLD.action_type
        OR NEW.region IS DISTINCT FROM OLD.region OR NEW.effective_from <> OLD.effective_from
        OR NEW.content_hash <> OLD.content_hash OR NEW.source_yaml <> OLD.source_yaml
        OR (OLD.effective_to IS NOT NULL AND NEW.effective_to IS DISTINCT FROM OLD.effective_to
            AND NOT (NEW.effective_to IS NULL AND OLD.effective_to > now()))
    THEN
        RAISE EXCEPTION 'methodology versions are immutable once filed'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$
"""

DRAFTS_GUARD = """
CREATE OR REPLACE FUNCTION methodology_drafts_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The uploaded document is a fact; approval is given once; a schedule is given once,
    -- and may be withdrawn (with what it closed) only while its instant is in the future.
    IF TG_OP = 'DELETE' OR NEW.id <> OLD.id OR NEW.methodology_id <> OLD.methodology_id
        OR NEW.version <> OLD.version OR NEW.action_type <> OLD.action_type
        OR NEW.region IS DISTINCT FROM OLD.region OR NEW.content_hash <> OLD.content_hash
        OR NEW.source_yaml <> OLD.source_yaml OR NEW.author_id <> OLD.author_id
        OR NEW.created_at <> OLD.created_at
        OR (OLD.approved_by IS NOT NULL AND (NEW.approved_by IS DISTINCT FROM OLD.approved_by
            OR NEW.approved_at IS DISTINCT FROM OLD.approved_at))
        OR (OLD.activate_at IS NOT NULL AND NEW.activate_at IS DISTINCT FROM OLD.activate_at
            AND NOT (NEW.activate_at IS NULL AND OLD.activate_at > now()))
        OR (NEW.activate_at IS NOT DISTINCT FROM OLD.activate_at
            AND (NEW.closes_methodology_id IS DISTINCT FROM OLD.closes_methodology_id
                OR NEW.closes_version IS DISTINCT FROM OLD.closes_version))
    THEN
        RAISE EXCEPTION 'a methodology draft''s document, approval and schedule never change'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$
"""

OLD_VERSIONS_GUARD = """
CREATE OR REPLACE FUNCTION methodology_versions_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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
"""

OLD_DRAFTS_GUARD = """
CREATE OR REPLACE FUNCTION methodology_drafts_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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

# Schedules made before this migration: what each closed is in its audit entry.
BACKFILL = """
UPDATE methodology_drafts AS d
SET closes_methodology_id = split_part(a.detail ->> 'closes', ' v', 1),
    closes_version = split_part(a.detail ->> 'closes', ' v', 2)::integer
FROM (
    SELECT DISTINCT ON (target_id) target_id, detail
    FROM admin_audit_log
    WHERE action = 'methodology.schedule' AND target_type = 'methodology-draft'
    ORDER BY target_id, id DESC
) AS a
WHERE a.target_id = d.id::text AND d.activate_at IS NOT NULL
    AND a.detail ->> 'closes' IS NOT NULL
"""


def upgrade() -> None:
    op.add_column("methodology_drafts", sa.Column("closes_methodology_id", sa.String(length=80)))
    op.add_column("methodology_drafts", sa.Column("closes_version", sa.Integer()))
    op.execute(BACKFILL)
    op.create_check_constraint(
        op.f("ck_methodology_drafts_closes_only_when_scheduled"),
        "methodology_drafts",
        "(closes_methodology_id IS NULL) = (closes_version IS NULL) "
        "AND (activate_at IS NOT NULL OR closes_methodology_id IS NULL)",
    )
    op.execute(VERSIONS_GUARD)
    op.execute(DRAFTS_GUARD)


def downgrade() -> None:
    op.execute(OLD_DRAFTS_GUARD)
    op.execute(OLD_VERSIONS_GUARD)
    op.drop_constraint(
        op.f("ck_methodology_drafts_closes_only_when_scheduled"), "methodology_drafts"
    )
    op.drop_column("methodology_drafts", "closes_version")
    op.drop_column("methodology_drafts", "closes_methodology_id")
