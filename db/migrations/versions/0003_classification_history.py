"""classification history: the classifications a reclassification replaced

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "classification_history",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "content_id", sa.Integer(), sa.ForeignKey("contents.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("sentiment", sa.String(16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(255), nullable=False),
        sa.Column("meta", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("classified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_classification_history_content_id", "classification_history", ["content_id"])


def downgrade() -> None:
    op.drop_table("classification_history")
