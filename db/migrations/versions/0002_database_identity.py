"""the database's identity (one row), carried by every job enqueued for it

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "volfefe_database",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    # 10 hex digits: short enough to read in a job id, 2^40 values, so two databases never meet.
    op.bulk_insert(table, [{"id": secrets.token_hex(5)}])


def downgrade() -> None:
    op.drop_table("volfefe_database")
