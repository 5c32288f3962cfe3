"""Read queries of the story explorer (``newsdedup serve``): every one a parameterised SQLAlchemy statement.

The explorer connects with the read-only role (newsdedup_reader); ``make_reader_engine`` also makes each
session read-only, so a bug here cannot write even through a role that could. Results are plain frozen
dataclasses: the web layer never sees a row or a session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, and_, bindparam, create_engine, event, exists, func, select
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from consumers.storage.codec import decode_shingle_hashes
from consumers.storage.database import make_engine, parse_url
from consumers.storage.models import ArticleRow, StoryEventRow, StoryRow
from consumers.storage.store import StoredEvent

ORDERS = ("recent", "largest")
MAX_MERGE_DEPTH = 64  # stories merged into stories merged into ...: far beyond any real chain, bounds the walk


@dataclass(frozen=True, slots=True)
class ArticleRecord:
    """One stored copy with its provenance."""

    id: str
    story_id: str
    input_id: str
    url: str
    url_normalised: str
    source: str
    title: str
    lang: str
    published_at: datetime
    scraped_at: datetime | None
    stored_at: datetime
    match_method: str
    similarity: float
    containment: float
    source_topic: str
    source_partition: int
    source_offset: int
    source_timestamp: datetime | None
    num_shingles: int
    canonical: bool


@dataclass(frozen=True, slots=True)
class StorySummary:
    id: str
    canonical_article_id: str
    canonical_title: str
    canonical_source: str
    member_count: int
    outlet_count: int
    first_seen_at: datetime
    last_seen_at: datetime
    updated_at: datetime
    merged_into: str | None


@dataclass(frozen=True, slots=True)
class LookupRecord:
    article: ArticleRecord
    story: StorySummary
    canonical: ArticleRecord | None


@dataclass(frozen=True, slots=True)
class StoryDetail:
    story: StorySummary
    members: tuple[ArticleRecord, ...]  # by publication time
    events: tuple[StoredEvent, ...]  # in the order they happened, this story's and those merged into it


@dataclass(frozen=True, slots=True)
class StoryFilter:
    since: datetime | None = None  # stories whose last copy was published at or after this ...
    until: datetime | None = None  # ... and whose first at or before this: their span overlaps the window
    outlet: str | None = None  # with a copy from this source (case-insensitive, exact)
    min_size: int | None = None
    max_size: int | None = None
    words: tuple[str, ...] = ()  # every word in the title of one of its copies (case-insensitive)


@dataclass(frozen=True, slots=True)
class StoryPage:
    stories: tuple[StorySummary, ...]
    more: bool  # another page follows


@dataclass(frozen=True, slots=True)
class ShingleSource:
    """What "why together" needs of one article: its stored hashes, or its text where prune dropped them."""

    id: str
    story_id: str
    shingle_hashes: np.ndarray | None  # sorted uint32; None once retention dropped them
    body: str
    content_hash: str
    fingerprint_identity: str


def make_reader_engine(url: str) -> Engine:
    """An engine whose sessions cannot write (PostgreSQL: default_transaction_read_only; SQLite: query_only).

    PostgreSQL gets a pool sized for the web server's worker threads, not the roles' 2 + 2, and autocommit: a
    read needs no BEGIN and ROLLBACK around it (each statement read committed data then, as it did inside a
    READ COMMITTED transaction), nor a ping at each checkout. Those were three of the four round trips of a
    query (bench/explorer.py); a connection the server dropped fails one request with 503 and the pool is
    renewed (SQLAlchemy invalidates it on a disconnect).
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = make_engine(url)
        statement = "PRAGMA query_only = ON"
    else:
        engine = create_engine(parsed, isolation_level="AUTOCOMMIT", pool_size=8, max_overflow=4, pool_timeout=10)
        statement = "SET default_transaction_read_only = on"

    def read_only(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
        if parsed.get_backend_name() != "sqlite":
            dbapi_connection.commit()  # psycopg opened a transaction for the SET: end it, the setting stays

    event.listen(engine, "connect", read_only)
    return engine


def can_write(engine: Engine) -> bool:
    """True when the role may change rows (PostgreSQL); the explorer warns, its sessions stay read-only."""
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as conn:
        return bool(conn.execute(select(func.has_table_privilege("articles", "INSERT"))).scalar_one())


class ExplorerStore:
    """The explorer's reads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

    # -- articles ---------------------------------------------------------------------------------

    def article(self, article_id: str) -> ArticleRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(_article_select().where(ArticleRow.id == article_id)).first()
        return _article(row) if row is not None else None

    def lookup(self, *, url_normalised: str | None = None, article_id: str | None = None,
               limit: int = 20) -> list[LookupRecord]:
        """The stored articles of one normalised URL (newest first) or the one of an id, each with its story and
        the story's canonical: one statement, built once (a lookup's latency is mostly round trips and statement
        building, bench/explorer.py)."""
        if url_normalised is not None:
            statement, key = LOOKUP_BY_URL, url_normalised
        else:
            statement, key = LOOKUP_BY_ID, article_id
        with self.engine.connect() as conn:
            rows = conn.execute(statement, {"key": key, "limit": limit}).all()
        article_width, story_width = len(fields(ArticleRecord)), len(fields(StorySummary))
        found = []
        for row in rows:
            story, canonical = row[article_width:article_width + story_width], row[article_width + story_width:]
            found.append(LookupRecord(_article(row[:article_width]), _summary(story),
                                      _article(canonical) if canonical[0] is not None else None))
        return found

    def articles_by_url(self, url_normalised: str, limit: int = 20) -> list[ArticleRecord]:
        """The stored articles of one normalised URL (a page updated later is another article), newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(_article_select().where(ArticleRow.url_normalised == url_normalised)
                                .order_by(ArticleRow.stored_at.desc(), ArticleRow.id).limit(limit)).all()
        return [_article(row) for row in rows]

    # -- stories ----------------------------------------------------------------------------------

    def stories(self, where: StoryFilter, order: str, limit: int, offset: int) -> StoryPage:
        """One page of the stories that absorbed no other's place (merged ones are left out)."""
        if order not in ORDERS:
            raise ValueError(f"order={order!r} is not one of {', '.join(ORDERS)}")
        conditions: list[ColumnElement[bool]] = [StoryRow.merged_into.is_(None)]
        if where.since is not None:
            conditions.append(StoryRow.last_seen_at >= where.since)
        if where.until is not None:
            conditions.append(StoryRow.first_seen_at <= where.until)
        if where.min_size is not None:
            conditions.append(StoryRow.member_count >= where.min_size)
        if where.max_size is not None:
            conditions.append(StoryRow.member_count <= where.max_size)
        member = ArticleRow.__table__.alias("member")
        if where.outlet:
            conditions.append(exists().where(member.c.story_id == StoryRow.id,
                                             func.lower(member.c.source) == where.outlet.lower()))
        if where.words:
            titled = ArticleRow.__table__.alias("titled")
            conditions.append(exists().where(titled.c.story_id == StoryRow.id, and_(*(
                func.lower(titled.c.title).contains(word.lower(), autoescape=True) for word in where.words))))
        keys = ((StoryRow.last_seen_at.desc(), StoryRow.id) if order == "recent"
                else (StoryRow.member_count.desc(), StoryRow.last_seen_at.desc(), StoryRow.id))
        statement = _story_select().where(*conditions).order_by(*keys).limit(limit + 1).offset(offset)
        with self.engine.connect() as conn:
            rows = conn.execute(statement).all()
        return StoryPage(tuple(_summary(row) for row in rows[:limit]), len(rows) > limit)

    def story(self, story_id: str, member_limit: int = 5000) -> StoryDetail | None:
        with self.engine.connect() as conn:
            row = conn.execute(_story_select().where(StoryRow.id == story_id)).first()
            if row is None:
                return None
            summary = _summary(row)
            members = conn.execute(_article_select().where(ArticleRow.story_id == story_id)
                                   .order_by(ArticleRow.published_at, ArticleRow.id).limit(member_limit)).all()
            story_ids = self._absorbed(conn, story_id)
            events = conn.execute(_event_select().where(StoryEventRow.story_id.in_(story_ids))
                                  .order_by(StoryEventRow.id)).all()
        return StoryDetail(summary, tuple(_article(m) for m in members), tuple(StoredEvent(*e) for e in events))

    def events(self, story_id: str) -> list[StoredEvent]:
        """The event log of the story and of every story merged into it, in the order the events happened."""
        with self.engine.connect() as conn:
            story_ids = self._absorbed(conn, story_id)
            rows = conn.execute(_event_select().where(StoryEventRow.story_id.in_(story_ids))
                                .order_by(StoryEventRow.id)).all()
        return [StoredEvent(*row) for row in rows]

    @staticmethod
    def _absorbed(conn: Any, story_id: str) -> list[str]:
        """The story and those merged into it, directly or through others (their events hold their joins)."""
        found, frontier = [story_id], [story_id]
        for _ in range(MAX_MERGE_DEPTH):
            frontier = list(conn.execute(select(StoryRow.id).where(StoryRow.merged_into.in_(frontier))).scalars())
            frontier = [sid for sid in frontier if sid not in found]
            if not frontier:
                break
            found.extend(frontier)
        return found

    # -- why together -----------------------------------------------------------------------------

    def shingle_sources(self, article_ids: Sequence[str]) -> dict[str, ShingleSource]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(ArticleRow.id, ArticleRow.story_id, ArticleRow.shingle_hashes, ArticleRow.body,
                                       ArticleRow.content_hash, ArticleRow.fingerprint_identity)
                                .where(ArticleRow.id.in_(sorted(set(article_ids))))).all()
        return {row[0]: ShingleSource(row[0], row[1], decode_hashes(row[2]), row[3], row[4], row[5]) for row in rows}

    def canonical_titles(self, article_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(source, title) of articles, for naming them on a page."""
        if not article_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(ArticleRow.id, ArticleRow.source, ArticleRow.title)
                                .where(ArticleRow.id.in_(sorted(set(article_ids))))).all()
        return {row[0]: (row[1], row[2]) for row in rows}


def decode_hashes(data: bytes | None) -> np.ndarray | None:
    """Stored shingle hashes through the column's one reader (codec.py, as the matcher's rebuild); None when
    prune dropped them."""
    if data is None:
        return None
    return decode_shingle_hashes(data)


def _article_columns(table: Any) -> list[Any]:
    """An ArticleRecord's columns of ``table`` (articles, or an alias of it), the canonical flag last."""
    return [table.id, table.story_id, table.input_id, table.url, table.url_normalised, table.source, table.title,
            table.lang, table.published_at, table.scraped_at, table.stored_at, table.match_method, table.similarity,
            table.containment, table.source_topic, table.source_partition, table.source_offset,
            table.source_timestamp, table.num_shingles, (table.id == StoryRow.canonical_article_id).label("canonical")]


def _article_select():  # type: ignore[no-untyped-def]
    return select(*_article_columns(ArticleRow)).join(StoryRow, StoryRow.id == ArticleRow.story_id)


def _article(row: Any) -> ArticleRecord:
    values = list(row)
    values[-1] = bool(values[-1])
    return ArticleRecord(*values)


def _story_columns(canonical: Any) -> list[Any]:
    """A StorySummary's columns; ``canonical``: the articles alias joined as the story's canonical."""
    return [StoryRow.id, StoryRow.canonical_article_id, func.coalesce(canonical.title, "").label("title"),
            func.coalesce(canonical.source, "").label("source"), StoryRow.member_count, StoryRow.outlet_count,
            StoryRow.first_seen_at, StoryRow.last_seen_at, StoryRow.updated_at, StoryRow.merged_into]


def _story_select():  # type: ignore[no-untyped-def]
    canonical = aliased(ArticleRow, name="canonical")
    return select(*_story_columns(canonical)).outerjoin(canonical, canonical.id == StoryRow.canonical_article_id)


def _summary(row: Any) -> StorySummary:
    return StorySummary(*row)


def _event_select():  # type: ignore[no-untyped-def]
    return select(StoryEventRow.id, StoryEventRow.story_id, StoryEventRow.kind, StoryEventRow.article_id,
                  StoryEventRow.reason, StoryEventRow.similarity, StoryEventRow.occurred_at)



def _lookup_statement(where: ColumnElement[bool]):  # type: ignore[no-untyped-def]
    """Articles with their story and the story's canonical, newest first; parameters ``key`` and ``limit``."""
    canonical = aliased(ArticleRow, name="canonical")
    return (select(*_article_columns(ArticleRow), *_story_columns(canonical), *_article_columns(canonical))
            .join(StoryRow, StoryRow.id == ArticleRow.story_id)
            .outerjoin(canonical, canonical.id == StoryRow.canonical_article_id)
            .where(where).order_by(ArticleRow.stored_at.desc(), ArticleRow.id).limit(bindparam("limit")))


LOOKUP_BY_URL = _lookup_statement(ArticleRow.url_normalised == bindparam("key"))
LOOKUP_BY_ID = _lookup_statement(ArticleRow.id == bindparam("key"))
