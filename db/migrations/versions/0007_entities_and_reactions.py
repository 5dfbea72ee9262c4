"""entities linked to each content, the market's reaction to it, and the price imports that call for it

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JSONDocument = sa.JSON().with_variant(JSONB(), "postgresql")


def _content_id() -> sa.Column:
    return sa.Column(
        "content_id", sa.Integer(), sa.ForeignKey("contents.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "content_entities",
        sa.Column(
            "content_id", sa.Integer(), sa.ForeignKey("contents.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("document", JSONDocument, nullable=False),
        sa.Column("assets_version", sa.String(64), nullable=False),
        sa.Column("extracted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "content_assets",
        _content_id(),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=True),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("mentions", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("content_id", "symbol", name="pk_content_assets"),
    )
    op.create_index("ix_content_assets_symbol", "content_assets", ["symbol"])
    op.create_table(
        "reactions",
        _content_id(),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("window", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("market_open", sa.Boolean(), nullable=True),
        sa.Column("abnormal_return", sa.Float(), nullable=True),
        sa.Column("z_score", sa.Float(), nullable=True),
        sa.Column("significance", sa.String(16), nullable=True),
        sa.Column("isolation", sa.Float(), nullable=True),
        sa.Column("record", JSONDocument, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("content_id", "symbol", "window", name="pk_reactions"),
    )
    op.create_index("ix_reactions_status", "reactions", ["status"])
    op.create_index("ix_reactions_significance", "reactions", ["significance"])
    op.create_table(
        "reaction_paths",
        _content_id(),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("path", JSONDocument, nullable=False),
        sa.PrimaryKeyConstraint("content_id", "symbol", name="pk_reaction_paths"),
    )
    op.create_table(
        "price_imports",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("symbols", JSONDocument, nullable=False),
        sa.Column("first_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bars", sa.Integer(), nullable=False),
        sa.Column("posts_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("posts_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    # The posts by time: the reaction reads a source's other posts around each one.
    op.create_index("ix_contents_source_published", "contents", ["source", "published_at"])


def downgrade() -> None:
    op.drop_index("ix_contents_source_published", table_name="contents")
    for table in ("price_imports", "reaction_paths", "reactions", "content_assets", "content_entities"):
        op.drop_table(table)
