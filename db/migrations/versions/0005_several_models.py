"""several models: one current classification per content and model, and a consensus per content

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

Every classification and every history row made before this revision was made by the one model then
configured: they are kept as they are, under the model name ``finbert`` (VOLFEFE_MODELS' default
name). Each classified content gets its consensus, which for one model is that model's reading.
``contents.classified`` goes: whether a content is classified depends on which models are configured,
and the classifications say it.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: the model name of the rows made before several models existed (config.DEFAULT_MODEL_NAME).
EXISTING_MODEL = "finbert"
#: config.DEFAULT_AMBIGUOUS_CONFIDENCE when this revision was written.
AMBIGUOUS_BELOW = 0.6
#: consensus.vote.METHOD
METHOD = "weighted_mean_probability"
#: rows read and written per round trip while the consensus is filled in.
PAGE = 5000
#: reflected unnamed constraints (SQLite's ``UNIQUE (content_id)`` of 0001) get this name in batch mode.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}

JSONDocument = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    bind = op.get_bind()
    unique = next(
        (
            constraint["name"]
            for constraint in sa.inspect(bind).get_unique_constraints("classifications")
            if constraint["column_names"] == ["content_id"]
        ),
        None,
    )
    with op.batch_alter_table("classifications", naming_convention=NAMING) as batch:
        batch.add_column(sa.Column("model", sa.String(32), nullable=False, server_default=EXISTING_MODEL))
        batch.drop_constraint(unique or "uq_classifications_content_id", type_="unique")
        batch.create_unique_constraint("uq_classifications_content_model", ["content_id", "model"])
        batch.drop_index("ix_classifications_sentiment_model")
        batch.create_index("ix_classifications_model_sentiment", ["model", "sentiment", "model_version"])
    with op.batch_alter_table("classifications") as batch:
        batch.alter_column("model", server_default=None)  # from now on every writer names its model
    with op.batch_alter_table("classification_history") as batch:
        batch.add_column(sa.Column("model", sa.String(32), nullable=False, server_default=EXISTING_MODEL))
    with op.batch_alter_table("classification_history") as batch:
        batch.alter_column("model", server_default=None)

    # Not in batch mode: on SQLite that would drop and recreate contents, and with foreign keys on,
    # dropping it deletes every classification (ON DELETE CASCADE). SQLite >= 3.35 drops a column in place.
    op.drop_index("ix_contents_unclassified", table_name="contents")
    if bind.dialect.name == "sqlite":
        op.execute("ALTER TABLE contents DROP COLUMN classified")
    else:
        op.drop_column("contents", "classified")
    op.create_index("ix_contents_skip_reason", "contents", ["skip_reason"])

    consensus = op.create_table(
        "consensus",
        sa.Column(
            "content_id", sa.Integer(), sa.ForeignKey("contents.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("sentiment", sa.String(16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("margin", sa.Float(), nullable=False),
        sa.Column("agreement", sa.Float(), nullable=False),
        sa.Column("ambiguous", sa.Boolean(), nullable=False),
        sa.Column("models", JSONDocument, nullable=False),
        sa.Column("dissent", JSONDocument, nullable=False),
        sa.Column("scores", JSONDocument, nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("basis", sa.String(512), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("sentiment IN ('positive', 'negative', 'neutral')", name="ck_consensus_sentiment"),
    )
    op.create_index("ix_consensus_ambiguous", "consensus", ["ambiguous"])
    _fill_consensus(bind, consensus)


def _fill_consensus(bind, consensus: sa.Table) -> None:
    """The consensus of each classified content: its one model's reading (a page at a time)."""
    rows = sa.table(
        "classifications",
        sa.column("id", sa.Integer()),
        sa.column("content_id", sa.Integer()),
        sa.column("sentiment", sa.String()),
        sa.column("confidence", sa.Float()),
        sa.column("model_version", sa.String()),
        sa.column("meta", JSONDocument),
    )
    after = 0
    while True:
        page = bind.execute(
            sa.select(rows.c.id, rows.c.content_id, rows.c.sentiment, rows.c.confidence, rows.c.model_version,
                      rows.c.meta)
            .where(rows.c.id > after)
            .order_by(rows.c.id)
            .limit(PAGE)
        ).all()  # fmt: skip
        if not page:
            return
        bind.execute(sa.insert(consensus), [_single_model_consensus(*row[1:]) for row in page])
        after = page[-1][0]


def _single_model_consensus(content_id, sentiment, confidence, model_version, meta) -> dict:
    scores = (meta or {}).get("raw_scores") if isinstance(meta, dict) else None
    if not isinstance(scores, dict) or not scores:
        scores = {sentiment: confidence}
    return {
        "content_id": content_id,
        "sentiment": sentiment,
        "confidence": confidence,
        "margin": _margin(scores),
        "agreement": 1.0,
        "ambiguous": confidence < AMBIGUOUS_BELOW,
        "models": {
            EXISTING_MODEL: {
                "sentiment": sentiment,
                "confidence": confidence,
                "weight": 1.0,
                "model_version": model_version,
            }
        },
        "dissent": [],
        "scores": scores,
        "method": METHOD,
        "basis": f"{EXISTING_MODEL}:1",
    }


def _margin(scores: dict) -> float:
    ranked = sorted((float(value) for value in scores.values()), reverse=True)
    return ranked[0] - ranked[1] if len(ranked) > 1 else ranked[0]


def downgrade() -> None:
    bind = op.get_bind()
    others = bind.execute(
        sa.text("SELECT count(*) FROM classifications WHERE model <> :name"), {"name": EXISTING_MODEL}
    ).scalar()
    if others:
        raise RuntimeError(
            f"cannot downgrade below 0005: {others} classifications were made by models other than "
            f"{EXISTING_MODEL!r}, and the old schema holds one model only"
        )
    op.drop_index("ix_consensus_ambiguous", table_name="consensus")
    op.drop_table("consensus")
    op.drop_index("ix_contents_skip_reason", table_name="contents")
    op.add_column(
        "contents", sa.Column("classified", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.execute(
        "UPDATE contents SET classified = true "
        "WHERE EXISTS (SELECT 1 FROM classifications WHERE classifications.content_id = contents.id)"
    )
    op.create_index("ix_contents_unclassified", "contents", ["classified", "id"])
    with op.batch_alter_table("classification_history") as batch:
        batch.drop_column("model")
    with op.batch_alter_table("classifications") as batch:
        batch.drop_index("ix_classifications_model_sentiment")
        batch.create_index("ix_classifications_sentiment_model", ["sentiment", "model_version"])
        batch.drop_constraint("uq_classifications_content_model", type_="unique")
        batch.create_unique_constraint("uq_classifications_content_id", ["content_id"])
        batch.drop_column("model")
