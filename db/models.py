"""The tables: posts, one current classification per post and model, their consensus, and history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SENTIMENTS = ("positive", "negative", "neutral")

#: JSONB on PostgreSQL (indexable, compact), plain JSON elsewhere.
JSONDocument = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    pass


class DatabaseIdentity(Base):
    """This database's identity: one row, made once by ``volfefe db upgrade``.

    Jobs carry it, so that a job is only ever run against the database it was enqueued for, and a
    new or reset database is never mistaken for another one that used the same Redis.
    """

    __tablename__ = "volfefe_database"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Content(Base):
    __tablename__ = "contents"
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_contents_source_external_id"),
        Index("ix_contents_skip_reason", "skip_reason"),
        Index("ix_contents_source_published", "source", "published_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    author: Mapped[str | None] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: why the content was skipped for good (e.g. no_text_to_classify); the sweep passes over it.
    skip_reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    classifications: Mapped[list[Classification]] = relationship(back_populates="content")


class Classification(Base):
    """The current classification of one content by one model (``model``: its name in VOLFEFE_MODELS)."""

    __tablename__ = "classifications"
    __table_args__ = (
        UniqueConstraint("content_id", "model", name="uq_classifications_content_model"),
        CheckConstraint(
            "sentiment IN ('positive', 'negative', 'neutral')", name="ck_classifications_sentiment"
        ),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="ck_classifications_confidence"),
        Index("ix_classifications_sentiment", "sentiment"),
        Index("ix_classifications_confidence", "confidence"),
        Index("ix_classifications_created_at", "created_at"),
        Index("ix_classifications_model_sentiment", "model", "sentiment", "model_version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("contents.id", ondelete="CASCADE"), nullable=False)
    model: Mapped[str] = mapped_column(String(32))
    sentiment: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(255))
    meta: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    content: Mapped[Content] = relationship(back_populates="classifications")


class ClassificationHistory(Base):
    """A classification that a reclassification replaced, kept with its model version and time."""

    __tablename__ = "classification_history"
    __table_args__ = (Index("ix_classification_history_content_id", "content_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("contents.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(32))
    sentiment: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(255))
    meta: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    #: when the replaced classification was made (its ``created_at``).
    classified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    replaced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Consensus(Base):
    """What the configured models say of one content together (``consensus.vote``), rewritten in the same
    transaction as any of its classifications, so it is never older than the rows it is made of."""

    __tablename__ = "consensus"
    __table_args__ = (
        CheckConstraint("sentiment IN ('positive', 'negative', 'neutral')", name="ck_consensus_sentiment"),
        Index("ix_consensus_ambiguous", "ambiguous"),
    )

    content_id: Mapped[int] = mapped_column(ForeignKey("contents.id", ondelete="CASCADE"), primary_key=True)
    sentiment: Mapped[str] = mapped_column(String(16))
    #: the combined probability of ``sentiment`` (0 to 1).
    confidence: Mapped[float] = mapped_column(Float)
    #: the combined probability of ``sentiment`` minus the next one's: small means the models together hesitated.
    margin: Mapped[float] = mapped_column(Float)
    #: the weighted share of the models whose own label is ``sentiment`` (0 to 1).
    agreement: Mapped[float] = mapped_column(Float)
    ambiguous: Mapped[bool] = mapped_column(Boolean)
    #: the models read: {name: {sentiment, confidence, weight, model_version}}; ``dissent``: names
    #: of those whose label differs; ``scores``: {sentiment: combined probability}; ``method``.
    models: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    dissent: Mapped[list[str]] = mapped_column(JSONDocument)
    scores: Mapped[dict[str, float]] = mapped_column(JSONDocument)
    method: Mapped[str] = mapped_column(String(64))
    #: the models it was made of with their weights, ``name:weight,...`` in configuration order: a
    #: consensus made under another VOLFEFE_MODELS is found by this (``consensus.vote.basis``).
    basis: Mapped[str] = mapped_column(String(512))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PriceBar(Base):
    """One OHLCV bar of a symbol, as a vendor delivered it (``volfefe import-prices``; market/).

    ``ts`` is the start of the bar in UTC; ``resolution`` its length (``1m``, ``5m``, ``1h``, ``1d``).
    A daily bar's ``ts`` is its session's date at 00:00 UTC. Stored bars are never altered by an import.
    """

    __tablename__ = "price_bars"
    __table_args__ = (
        # Unique, and the index of every lookup: one symbol's bars of one resolution over a time range.
        PrimaryKeyConstraint("symbol", "resolution", "ts", name="pk_price_bars"),
        CheckConstraint("low <= high", name="ck_price_bars_low_high"),
    )

    symbol: Mapped[str] = mapped_column(String(32))
    resolution: Mapped[str] = mapped_column(String(8))
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    #: None where the vendor gives none (an index).
    volume: Mapped[float | None] = mapped_column(Float)


class ContentEntities(Base):
    """What a content names: its mentions and links (``entities.Entities.to_json``), extracted by the job
    that classifies it, from the visible text the models read."""

    __tablename__ = "content_entities"

    content_id: Mapped[int] = mapped_column(ForeignKey("contents.id", ondelete="CASCADE"), primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    #: the asset list's fingerprint: entities found with another list are found by this.
    assets_version: Mapped[str] = mapped_column(String(64))
    extracted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ContentAsset(Base):
    """One asset a content is linked to (a row of its entities' links): what the reaction reads."""

    __tablename__ = "content_assets"
    __table_args__ = (
        PrimaryKeyConstraint("content_id", "symbol", name="pk_content_assets"),
        Index("ix_content_assets_symbol", "symbol"),
    )

    content_id: Mapped[int] = mapped_column(ForeignKey("contents.id", ondelete="CASCADE"))
    symbol: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str | None] = mapped_column(String(16))
    #: how it was found: cashtag, alias, model, or default (the post names none: the market).
    method: Mapped[str] = mapped_column(String(16))
    mentions: Mapped[int] = mapped_column()


class Reaction(Base):
    """What the market did after a content, for one linked asset and one window (``market.reaction``).

    The columns are the figures reports filter and sort on; ``record`` is the whole record."""

    __tablename__ = "reactions"
    __table_args__ = (
        PrimaryKeyConstraint("content_id", "symbol", "window", name="pk_reactions"),
        Index("ix_reactions_status", "status"),
        Index("ix_reactions_significance", "significance"),
    )

    content_id: Mapped[int] = mapped_column(ForeignKey("contents.id", ondelete="CASCADE"))
    symbol: Mapped[str] = mapped_column(String(32))
    window: Mapped[str] = mapped_column(String(16))
    #: ok (the only one with a z-score), incomplete, awaiting_prices, no_prices, ...
    status: Mapped[str] = mapped_column(String(32))
    market_open: Mapped[bool | None] = mapped_column(Boolean)
    abnormal_return: Mapped[float | None] = mapped_column(Float)
    z_score: Mapped[float | None] = mapped_column(Float)
    #: p<0.01, p<0.05, n.s. (None without a z-score).
    significance: Mapped[str | None] = mapped_column(String(16))
    isolation: Mapped[float | None] = mapped_column(Float)
    record: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ReactionPath(Base):
    """The cumulative abnormal return around a content for one linked asset: the event-study path."""

    __tablename__ = "reaction_paths"
    __table_args__ = (PrimaryKeyConstraint("content_id", "symbol", name="pk_reaction_paths"),)

    content_id: Mapped[int] = mapped_column(ForeignKey("contents.id", ondelete="CASCADE"))
    symbol: Mapped[str] = mapped_column(String(32))
    path: Mapped[dict[str, Any]] = mapped_column(JSONDocument)


class PriceImport(Base):
    """One ``volfefe import-prices`` that added bars: the span it covered, so that reactions computed
    before it are computed again (``jobs.react``)."""

    __tablename__ = "price_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    symbols: Mapped[list[str]] = mapped_column(JSONDocument)
    first_ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    bars: Mapped[int] = mapped_column()
    #: the posts published in this span are the ones whose windows or baselines its bars can reach.
    posts_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    posts_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
