"""Review lists (dynamic management) and the registry status of each score.

Revision ID: 0002
Revises: 0001
Create Date: 2026-04-01

- ``scores`` gains four nullable columns: the household's registry status of the scored wave
  (``registry_status``, ``poor_since_year``, ``exit_year``, ``monitoring_group``), so the roster
  knows who is enrolled. Rows scored before stay NULL (status unknown); nothing is rewritten.
- ``scores.tier`` widens from 16 to 32 characters: the poverty tier ``likely_impoverished`` has 19, so
  PostgreSQL refused those rows (SQLite does not check lengths) and they stayed in the spool.
- ``review_runs``: one row per `tpas roster review` run (year, region scope, as-of time, params, counts).
- ``review_lists``: the enrolment / exit / relapse-watch lists of each run, one row per listed household.

Types are spelled out here (not imported from serving.store) so this revision stays what it was
when the store's code moves on.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATUS_COLUMNS = (
    ("registry_status", sa.String(32)),
    ("poor_since_year", sa.Integer()),
    ("exit_year", sa.Integer()),
    ("monitoring_group", sa.String(32)),
)


def _id():
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json():
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _region():
    # byte order on PostgreSQL so "region_code >= '4305' AND < '4306'" (a prefix) uses the index
    return sa.String(12).with_variant(sa.String(12, collation="C"), "postgresql")


def upgrade() -> None:
    # SQLite cannot change a column's type in place: batch mode copies the table there (ALTER on PostgreSQL)
    with op.batch_alter_table("scores") as batch:
        for name, type_ in STATUS_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.alter_column("tier", existing_type=sa.String(16), type_=sa.String(32), existing_nullable=False)

    op.create_table(
        "review_runs",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("scope", _region(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("params", _json(), nullable=True),
        sa.Column("counts", _json(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_review_runs"),
        sa.UniqueConstraint("run_id", name="uq_review_runs_run_id"),
    )
    op.create_index("ix_review_runs_scope_created_at", "review_runs", ["scope", "created_at"])

    op.create_table(
        "review_lists",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("list_kind", sa.String(16), nullable=False),
        sa.Column("region_group", _region(), nullable=False),
        sa.Column("region_code", _region(), nullable=False),
        sa.Column("household_pid", sa.String(64), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("poverty_risk", sa.Float(), nullable=True),
        sa.Column("poverty_score", sa.Float(), nullable=True),
        sa.Column("poverty_tier", sa.String(32), nullable=True),
        sa.Column("relapse_risk", sa.Float(), nullable=True),
        sa.Column("relapse_score", sa.Float(), nullable=True),
        sa.Column("relapse_tier", sa.String(32), nullable=True),
        sa.Column("registry_status", sa.String(32), nullable=True),
        sa.Column("monitoring_group", sa.String(32), nullable=True),
        sa.Column("reasons", _json(), nullable=True),
        sa.Column("main_causes_en", sa.Text(), nullable=True),
        sa.Column("main_causes_zh", sa.Text(), nullable=True),
        sa.Column("evidence", _json(), nullable=True),
        sa.Column("model_name", sa.String(128), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review_lists"),
    )
    op.create_index("ix_review_lists_run_id_list_kind_region_code", "review_lists",
                    ["run_id", "list_kind", "region_code"])


def downgrade() -> None:
    op.drop_index("ix_review_lists_run_id_list_kind_region_code", table_name="review_lists")
    op.drop_table("review_lists")
    op.drop_index("ix_review_runs_scope_created_at", table_name="review_runs")
    op.drop_table("review_runs")
    # scores.tier stays 32 characters wide: narrowing it would fail on the rows it now holds
    with op.batch_alter_table("scores") as batch:  # SQLite before 3.35 cannot DROP COLUMN in place
        for name, _ in reversed(STATUS_COLUMNS):
            batch.drop_column(name)
