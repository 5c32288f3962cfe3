"""Tables. The schema itself is created by Alembic (``newsdedup db upgrade``), never create_all."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
ID = String(40)
STRIP_PENDING = "stripped_at IS NULL OR stripped_at < updated_at"  # changed since prune stripped it
LISTED, MERGED = "merged_into IS NULL", "merged_into IS NOT NULL"  # stories in the explorer's list, or not
AUTO_ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER only


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: newsdedup stores aware UTC times only")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class StoryRow(Base):
    __tablename__ = "stories"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    match_partition: Mapped[int] = mapped_column(Integer, index=True)
    # No foreign key: the canonical article and its story are written in the same transaction,
    # and a cycle of keys would need deferred constraints on every backend.
    canonical_article_id: Mapped[str] = mapped_column(ID)
    member_count: Mapped[int] = mapped_column(Integer)
    outlet_count: Mapped[int] = mapped_column(Integer)
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    merged_into: Mapped[str | None] = mapped_column(ID)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)  # growth metrics: the oldest stored
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)  # retention counts from it
    # When prune last dropped its articles' verification data (past the matcher's window); NULL: never.
    stripped_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    # The stories prune may still have to strip: it reads this index, not every story past the window each day.
    # The explorer's story list (its two orders) and its merged stories: migration 0006.
    __table_args__ = (Index("ix_stories_strip_pending", "updated_at", postgresql_where=text(STRIP_PENDING),
                            sqlite_where=text(STRIP_PENDING)),
                      Index("ix_stories_recent", "last_seen_at", postgresql_where=text(LISTED),
                            sqlite_where=text(LISTED)),
                      Index("ix_stories_largest", "member_count", "last_seen_at", postgresql_where=text(LISTED),
                            sqlite_where=text(LISTED)),
                      Index("ix_stories_merged_into", "merged_into", postgresql_where=text(MERGED),
                            sqlite_where=text(MERGED)))


class ArticleRow(Base):
    __tablename__ = "articles"

    id: Mapped[str] = mapped_column(ID, primary_key=True)  # hash of (normalised URL, content)
    story_id: Mapped[str] = mapped_column(ForeignKey("stories.id"), index=True)
    input_id: Mapped[str] = mapped_column(String(256))  # the producer's id (no query looks it up: no index)
    url: Mapped[str] = mapped_column(Text)
    url_normalised: Mapped[str] = mapped_column(Text)  # the explorer's lookup: a hash index (migration 0006)
    source: Mapped[str] = mapped_column(String(256))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)  # cleaned text
    lang: Mapped[str] = mapped_column(String(16))
    content_hash: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[datetime] = mapped_column(UtcDateTime)
    scraped_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    num_shingles: Mapped[int] = mapped_column(Integer)
    # Verification data; both NULL once prune found the story past the matcher's window (migration 0004).
    signature: Mapped[bytes | None] = mapped_column(LargeBinary)  # MinHash, little-endian uint32
    shingle_hashes: Mapped[bytes | None] = mapped_column(LargeBinary)  # sorted uint32 hashes: exact verification
    fingerprint_identity: Mapped[str] = mapped_column(String(80))
    match_method: Mapped[str] = mapped_column(String(16))  # canonical / exact / near
    similarity: Mapped[float] = mapped_column(Float)  # estimated Jaccard to the story's canonical
    containment: Mapped[float] = mapped_column(Float)  # estimated containment, smaller in larger
    source_topic: Mapped[str] = mapped_column(String(255))  # lineage: where the raw message was read
    source_partition: Mapped[int] = mapped_column(Integer)
    source_offset: Mapped[int] = mapped_column(BigInteger)
    source_timestamp: Mapped[datetime | None] = mapped_column(UtcDateTime)
    match_partition: Mapped[int] = mapped_column(Integer)
    stored_at: Mapped[datetime] = mapped_column(UtcDateTime)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON)  # the producer's metadata

    __table_args__ = (Index("ix_articles_url_normalised", "url_normalised", postgresql_using="hash"),)
    # len(body) in characters, which canonical election reads: a rebuild takes it from here instead of
    # decompressing every body out of TOAST. NULL in rows stored before migration 0005 and not converted by it.
    body_chars: Mapped[int | None] = mapped_column(Integer)


class StoryEventRow(Base):
    """Append-only provenance log: founded, joined, canonical_changed, merged.

    Also the outbox of ``stories.events``: the relay publishes each match partition's rows in id order
    (consumers/event_relay.py).
    """

    __tablename__ = "story_events"

    id: Mapped[int] = mapped_column(AUTO_ID, primary_key=True, autoincrement=True)
    match_partition: Mapped[int] = mapped_column(Integer)
    story_id: Mapped[str] = mapped_column(ID, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    article_id: Mapped[str | None] = mapped_column(ID)
    reason: Mapped[str] = mapped_column(Text)
    similarity: Mapped[float | None] = mapped_column(Float)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_story_events_match_partition_id", "match_partition", "id"),)


class EventRelayRow(Base):
    """How far the relay has published one match partition's events (the highest id sent and acknowledged).

    Every batch transaction of the partition upserts this row first: the row lock orders the writers of a
    partition, so the partition's event ids commit in increasing order and the relay's "id > published_id"
    cannot pass over a row that commits later with a lower id.
    """

    __tablename__ = "event_relay"

    match_partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    published_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ConsumerOffsetRow(Base):
    """Next offset to read, written in the same transaction as the results it covers."""

    __tablename__ = "consumer_offsets"

    consumer_group: Mapped[str] = mapped_column(String(255), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
