"""The feedback table.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("context_sha256", sa.String(64), nullable=False),
        sa.Column("answer_start", sa.Integer(), nullable=False),
        sa.Column("answer_end", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("correction_start", sa.Integer(), nullable=True),
        sa.Column("correction_end", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("model_version", sa.String(100), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("source", sa.String(32), nullable=False),
    )
    op.create_index("ix_feedback_context_sha256", "feedback", ["context_sha256"])


def downgrade() -> None:
    op.drop_index("ix_feedback_context_sha256", table_name="feedback")
    op.drop_table("feedback")
