"""guards the invariant tests found missing

Revision ID: 20261203_0002
Revises: 20261203_0001
Create Date: 2026-12-03 11:00:00

`tests/ledger/test_invariants_sql.py` tries to break every invariant with hand-written SQL.
It found these holes, closed here where the data lives:

* a posting's asset is now tied to its account's asset (a foreign key on (account_id, asset)),
  so a POINTS posting cannot be labelled GCO2E to pass the zero-sum check;
* a participant's account is always bounded (available >= 0 cannot be switched off at insert);
* `redemptions` and `methodology_versions` refuse TRUNCATE, like every other fact table;
* an event's outcome only moves forward: received -> anything; pending -> a final outcome;
  anything -> retracted (keeping its participant, amounts and credit); retracted is final. A
  credited event can no longer be set back to pending or stripped of its credit.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261203_0002"
down_revision: str | None = "20261203_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENTS_GUARD = """
CREATE OR REPLACE FUNCTION partner_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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
    IF NOT (
        OLD.status = 'received' AND NEW.status <> 'received'
        OR OLD.status = 'pending' AND NEW.status NOT IN ('received', 'pending')
        OR OLD.status <> 'retracted' AND NEW.status = 'retracted'
            AND NEW.participant_id IS NOT DISTINCT FROM OLD.participant_id
            AND NEW.grams = OLD.grams AND NEW.points = OLD.points
            AND NEW.credit_transaction_id IS NOT DISTINCT FROM OLD.credit_transaction_id
            AND NEW.duplicate_of IS NOT DISTINCT FROM OLD.duplicate_of
    ) THEN
        RAISE EXCEPTION 'an event''s outcome only moves forward: % -> % is not allowed',
            OLD.status, NEW.status USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$
"""

OLD_EVENTS_GUARD = """
CREATE OR REPLACE FUNCTION partner_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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
"""


def upgrade() -> None:
    op.create_unique_constraint("uq_ledger_accounts_id_asset", "ledger_accounts", ["id", "asset"])
    op.drop_constraint(
        "fk_ledger_postings_account_id_ledger_accounts", "ledger_postings", type_="foreignkey"
    )
    op.create_foreign_key(
        "fk_ledger_postings_account_id_asset_ledger_accounts",
        "ledger_postings",
        "ledger_accounts",
        ["account_id", "asset"],
        ["id", "asset"],
    )
    op.create_check_constraint(
        op.f("ck_ledger_accounts_participant_bounded"),
        "ledger_accounts",
        "kind <> 'participant' OR bounded",
    )
    for table in ("redemptions", "methodology_versions"):
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change()"
        )
    op.execute(EVENTS_GUARD)


def downgrade() -> None:
    op.execute(OLD_EVENTS_GUARD)
    for table in ("redemptions", "methodology_versions"):
        op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
    op.drop_constraint(
        op.f("ck_ledger_accounts_participant_bounded"), "ledger_accounts", type_="check"
    )
    op.drop_constraint(
        "fk_ledger_postings_account_id_asset_ledger_accounts",
        "ledger_postings",
        type_="foreignkey",
    )
    op.create_foreign_key(
        "fk_ledger_postings_account_id_ledger_accounts",
        "ledger_postings",
        "ledger_accounts",
        ["account_id"],
        ["id"],
    )
    op.drop_constraint("uq_ledger_accounts_id_asset", "ledger_accounts", type_="unique")
