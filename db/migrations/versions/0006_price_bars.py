"""price_bars: OHLCV bars imported by ``volfefe import-prices``, read by the reaction to each post

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "price_bars",
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("resolution", sa.String(8), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("open", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("close", sa.Float(), nullable=False),
        sa.Column("volume", sa.Float(), nullable=True),
        # Unique, and the index of every lookup: one symbol's bars of one resolution over a time range.
        sa.PrimaryKeyConstraint("symbol", "resolution", "ts", name="pk_price_bars"),
        sa.CheckConstraint("low <= high", name="ck_price_bars_low_high"),
    )


def downgrade() -> None:
    op.drop_table("price_bars")
