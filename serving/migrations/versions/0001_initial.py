"""Inference store: scores, outcomes, api_keys.

Revision ID: 0001
Revises:
Create Date: 2025-11-23

Types are spelled out here (not imported from serving.store) so this revision stays what it was
when the store's code moves on.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id():
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json():
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _region():
    # byte order on PostgreSQL so "region_code >= '4305' AND < '4306'" (a prefix) uses the index
    return sa.String(12).with_variant(sa.String(12, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "scores",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("household_pid", sa.String(64), nullable=False),
        sa.Column("region_code", _region(), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("year", sa.Integer(), nullable=True),
        sa.Column("risk", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("eligible", sa.Boolean(), nullable=True),
        sa.Column("features", _json(), nullable=True),
        sa.Column("contributions", _json(), nullable=True),
        sa.Column("reasons", _json(), nullable=True),
        sa.Column("main_causes_en", sa.Text(), nullable=True),
        sa.Column("main_causes_zh", sa.Text(), nullable=True),
        sa.Column("model_name", sa.String(128), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scores"),
        sa.UniqueConstraint("record_id", name="uq_scores_record_id"),
    )
    op.create_index("ix_scores_household_task_time", "scores", ["household_pid", "task", "scored_at", "id"])
    op.create_index("ix_scores_task_region_risk", "scores", ["task", "region_code", "risk"])

    op.create_table(
        "outcomes",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("household_pid", sa.String(64), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("observed_on", sa.Date(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reporter_key_id", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outcomes"),
        sa.UniqueConstraint("record_id", name="uq_outcomes_record_id"),
    )
    op.create_index("ix_outcomes_household_task_observed", "outcomes", ["household_pid", "task", "observed_on"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("region_code", sa.String(12), nullable=True),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_id", name="uq_api_keys_key_id"),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_index("ix_outcomes_household_task_observed", table_name="outcomes")
    op.drop_table("outcomes")
    op.drop_index("ix_scores_task_region_risk", table_name="scores")
    op.drop_index("ix_scores_household_task_time", table_name="scores")
    op.drop_table("scores")
