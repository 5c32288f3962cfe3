"""The story store: every read and write the service makes, each a parameterised statement.

``write_batch`` is the heart: one transaction holds the batch's articles, stories, events and
the consumed offsets, so a crash before commit loses nothing (the batch is read again) and a
crash after it duplicates nothing (the stored offsets say where to resume, and article keys
are primary keys).
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Connection, Engine, Select, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from consumers.evaluation import ArticleView
from consumers.matcher import SAME, ArticleState, Changes, IndexedArticle, Matcher, StoredArticle, Story
from consumers.prepare import Lineage, PreparedArticle, fingerprint_again
from consumers.stages.elect import Contender
from consumers.stages.fingerprint import FingerprintConfig, array_from_bytes, array_to_bytes
from consumers.stages.match import Similarity
from consumers.storage.models import ArticleRow, ConsumerOffsetRow, EventRelayRow, StoryEventRow, StoryRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OffsetMark:
    """The next offset to read of one partition, stored with the results it covers."""

    consumer_group: str
    topic: str
    partition: int
    next_offset: int


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A row of the story event log, as the relay publishes it."""

    id: int
    story_id: str
    kind: str
    article_id: str | None
    reason: str
    similarity: float | None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class ExportRow:
    input_id: str
    story_id: str
    canonical_input_id: str
    is_canonical: bool
    similarity: float


@dataclass(frozen=True, slots=True)
class RefingerprintResult:
    updated: int
    refused: int  # their text no longer gives their stored content hash: left as they were
    refused_examples: tuple[str, ...]  # the first few refused article keys, for the message


class StoryStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- writes ------------------------------------------------------------------------------

    def write_batch(self, changes: Changes, matcher: Matcher, offsets: Sequence[OffsetMark],
                    match_partition: int) -> None:
        """Store one batch and its offsets in a single transaction (see the module docstring)."""
        now = datetime.now(UTC)
        new_keys = {prepared.key for prepared, _ in changes.new_articles}
        with self.engine.begin() as conn:
            conn.execute(self._claim_relay_row(match_partition, now))  # first: orders the partition's writers
            new_stories = [self._story_values(matcher.story(sid, changes), match_partition, now)
                           for sid in sorted(changes.new_stories)]
            if new_stories:
                conn.execute(insert(StoryRow), new_stories)
            updated = [self._story_values(matcher.story(sid, changes), match_partition, now)
                       for sid in sorted(changes.dirty_stories - changes.new_stories)]
            if updated:
                conn.execute(
                    update(StoryRow).where(StoryRow.id == bindparam("b_id")),
                    [{"b_id": row.pop("id"), **_without(row, "created_at")} for row in updated],
                )
            if changes.new_articles:
                conn.execute(insert(ArticleRow), [
                    self._article_values(prepared, lineage, matcher.articles[prepared.key], match_partition, now)
                    for prepared, lineage in changes.new_articles
                ])
            moved = sorted(changes.dirty_articles - new_keys)
            if moved:
                conn.execute(update(ArticleRow).where(ArticleRow.id == bindparam("b_id")),
                             [self._moved_values(key, matcher.articles[key]) for key in moved])
            if changes.events:
                conn.execute(insert(StoryEventRow), [
                    {"story_id": e.story_id, "kind": e.kind, "article_id": e.article_key, "reason": e.reason,
                     "similarity": e.similarity, "occurred_at": now, "match_partition": match_partition}
                    for e in changes.events
                ])
            for mark in offsets:
                conn.execute(self._upsert_offset(mark, now))

    def _claim_relay_row(self, match_partition: int, now: datetime):  # type: ignore[no-untyped-def]
        """An upsert of the partition's event_relay row: it holds the row's lock until the transaction ends
        (see EventRelayRow), and creates the row (nothing published) for a new partition."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(EventRelayRow).values(match_partition=match_partition, published_id=0,
                                                         updated_at=now)
        return statement.on_conflict_do_update(index_elements=["match_partition"],
                                               set_={"match_partition": statement.excluded.match_partition})

    def unpublished_events(self, match_partition: int, after_id: int | None = None,
                           limit: int = 5000) -> tuple[int, list[StoredEvent]]:
        """The partition's published mark (or ``after_id``, the caller's newer one) and up to ``limit`` events
        after it, in id order."""
        with self.engine.connect() as conn:
            if after_id is None:
                after_id = conn.execute(select(EventRelayRow.published_id).where(
                    EventRelayRow.match_partition == match_partition)).scalar_one_or_none() or 0
            rows = conn.execute(
                select(StoryEventRow.id, StoryEventRow.story_id, StoryEventRow.kind, StoryEventRow.article_id,
                       StoryEventRow.reason, StoryEventRow.similarity, StoryEventRow.occurred_at)
                .where(StoryEventRow.match_partition == match_partition, StoryEventRow.id > after_id)
                .order_by(StoryEventRow.id).limit(limit))
            return after_id, [StoredEvent(*row) for row in rows]

    def mark_published(self, match_partition: int, event_id: int) -> None:
        """Store that the partition's events up to ``event_id`` are published; never moves the mark back."""
        with self.engine.begin() as conn:
            conn.execute(update(EventRelayRow)
                         .where(EventRelayRow.match_partition == match_partition,
                                EventRelayRow.published_id < event_id)
                         .values(published_id=event_id, updated_at=datetime.now(UTC)))

    def _upsert_offset(self, mark: OffsetMark, now: datetime):  # type: ignore[no-untyped-def]
        values = {"consumer_group": mark.consumer_group, "topic": mark.topic, "partition": mark.partition,
                  "next_offset": mark.next_offset, "updated_at": now}
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(ConsumerOffsetRow).values(values)
        return statement.on_conflict_do_update(
            index_elements=["consumer_group", "topic", "partition"],
            set_={"next_offset": statement.excluded.next_offset, "updated_at": statement.excluded.updated_at},
        )

    @staticmethod
    def _story_values(story: Story, match_partition: int, now: datetime) -> dict:
        return {
            "id": story.id, "match_partition": match_partition, "canonical_article_id": story.canonical_key,
            "member_count": len(story.members), "outlet_count": len(story.outlets),
            "first_seen_at": story.first_seen, "last_seen_at": story.last_seen,
            "merged_into": story.merged_into, "created_at": now, "updated_at": story.last_touched,
        }

    @staticmethod
    def _moved_values(key: str, state: ArticleState) -> dict:
        # One lookup per article: Matcher.articles builds its state from the columns on each access.
        return {"b_id": key, "story_id": state.story_id, "similarity": state.similarity.jaccard,
                "containment": state.similarity.containment}

    @staticmethod
    def _article_values(prepared: PreparedArticle, lineage: Lineage, indexed: ArticleState,
                        match_partition: int, now: datetime) -> dict:
        return {
            "id": prepared.key, "story_id": indexed.story_id, "input_id": prepared.input_id,
            "url": prepared.url, "url_normalised": prepared.url_normalised, "source": prepared.source,
            "title": prepared.title, "body": prepared.text, "lang": prepared.lang,
            "content_hash": prepared.content_hash, "published_at": prepared.published_at,
            "scraped_at": prepared.scraped_at, "num_shingles": prepared.num_shingles,
            "signature": array_to_bytes(prepared.signature),
            "shingle_hashes": array_to_bytes(prepared.shingle_hashes),
            "fingerprint_identity": prepared.fingerprint_identity, "match_method": indexed.method,
            "similarity": indexed.similarity.jaccard, "containment": indexed.similarity.containment,
            "source_topic": lineage.topic, "source_partition": lineage.partition, "source_offset": lineage.offset,
            "source_timestamp": (datetime.fromtimestamp(lineage.timestamp_ms / 1000, UTC)
                                 if lineage.timestamp_ms is not None else None),
            "match_partition": match_partition, "stored_at": now, "extra": prepared.metadata,
        }

    def refingerprint(self, config: FingerprintConfig, batch_rows: int = 1000,
                      on_batch: Callable[[int], None] | None = None) -> RefingerprintResult:
        """Recompute signature, shingle hashes and shingle count of every article stored under
        another fingerprint identity than ``config``'s, from its stored text, in place.

        Batches of ``batch_rows`` rows, one transaction each, in primary-key order (keyset paging:
        neither a million rows in memory nor one long transaction). Rows already at the identity are
        never read, so a run that was interrupted continues where it stopped when started again.
        A row whose text no longer gives its stored content hash is refused and left as it was: the
        content hash is part of the article key, and a different one means normalisation changed,
        which re-fingerprinting cannot repair. Stories are not re-matched.
        ``on_batch(rows)`` is told how many rows each batch looked at.
        """
        identity = config.identity
        update_row = (update(ArticleRow)
                      # Only a row still as we read it: nothing else rewrites fingerprints, but a second
                      # refingerprint run at the same time must not write twice.
                      .where(ArticleRow.id == bindparam("b_id"), ArticleRow.fingerprint_identity == bindparam("b_old")))
        updated, refused, examples = 0, 0, list[str]()
        last_key = ""  # article keys are hex digests: every one sorts after ""
        while True:
            with self.engine.begin() as conn:
                rows = conn.execute(
                    select(ArticleRow.id, ArticleRow.body, ArticleRow.content_hash, ArticleRow.fingerprint_identity)
                    .where(ArticleRow.id > last_key, ArticleRow.fingerprint_identity != identity)
                    .order_by(ArticleRow.id).limit(batch_rows)
                ).all()
                if not rows:
                    break
                changes = []
                for key, body, stored_hash, old_identity in rows:
                    fp = fingerprint_again(body, stored_hash, config)
                    if fp is None:
                        refused += 1
                        if len(examples) < 5:
                            examples.append(key)
                        continue
                    changes.append({"b_id": key, "b_old": old_identity, "signature": array_to_bytes(fp.signature),
                                    "shingle_hashes": array_to_bytes(fp.shingle_hashes),
                                    "num_shingles": fp.num_shingles, "fingerprint_identity": identity})
                if changes:
                    conn.execute(update_row, changes)
                updated += len(changes)
                last_key = rows[-1][0]
            if on_batch is not None:
                on_batch(len(rows))
        return RefingerprintResult(updated, refused, tuple(examples))

    # -- reads -------------------------------------------------------------------------------

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

    def stored_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these article keys are stored already."""
        found: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(keys), 1000):  # bounded IN lists
                chunk = keys[start:start + 1000]
                found.update(conn.execute(select(ArticleRow.id).where(ArticleRow.id.in_(chunk))).scalars())
        return found

    def fingerprint_identities(self) -> Counter[str]:
        """How many stored articles carry each fingerprint identity."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ArticleRow.fingerprint_identity, func.count()).group_by(ArticleRow.fingerprint_identity))
            return Counter({identity: count for identity, count in rows})

    def load_offsets(self, consumer_group: str, topic: str) -> dict[int, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ConsumerOffsetRow.partition, ConsumerOffsetRow.next_offset)
                .where(ConsumerOffsetRow.consumer_group == consumer_group, ConsumerOffsetRow.topic == topic)
            )
            return {partition: offset for partition, offset in rows}

    def load_into(self, matcher: Matcher, match_partitions: Sequence[int], fingerprint_identity: str) -> int:
        """Rebuild a matcher's state from stored stories still inside its retention window.

        Rows stream into ``Matcher.load`` (never all in memory at once) as they arrive, in
        publication order like the original inserts. Of each signature only the values the LSH
        bands use are read (92 of 512 bytes at the default 23 bands of 1 row).
        """
        bands, rows_per_band = matcher.index.bands
        cutoff = matcher.clock() - matcher.retention
        live = (StoryRow.match_partition.in_(match_partitions), StoryRow.merged_into.is_(None),
                StoryRow.updated_at >= cutoff)
        with self.engine.connect() as conn:
            story_rows = conn.execute(
                select(StoryRow.id, StoryRow.canonical_article_id, StoryRow.first_seen_at, StoryRow.last_seen_at,
                       StoryRow.updated_at).where(*live)
            ).all()
            stories = [Story(sid, canonical, [], Counter(), first, last, touched)
                       for sid, canonical, first, last, touched in story_rows]
            article_rows = _streamed(conn, (
                select(ArticleRow.id, ArticleRow.story_id, ArticleRow.published_at, ArticleRow.source,
                       func.length(ArticleRow.body), func.substr(ArticleRow.signature, 1, 4 * bands * rows_per_band),
                       ArticleRow.shingle_hashes,
                       ArticleRow.content_hash, ArticleRow.match_method, ArticleRow.similarity,
                       ArticleRow.containment, ArticleRow.fingerprint_identity)
                .join(StoryRow, StoryRow.id == ArticleRow.story_id)
                .where(*live)
                .order_by(ArticleRow.published_at, ArticleRow.id)
            ))
            by_id = {story.id: story for story in stories}
            counts = Counter[str]()

            def stored() -> Iterator[StoredArticle]:
                for (key, story_id, published, source, chars, signature, hashes, content,
                     method, similarity, containment, identity) in article_rows:
                    if identity != fingerprint_identity:
                        raise ValueError(
                            f"stored signatures were made with {identity!r}, this build uses {fingerprint_identity!r}"
                            f": run `newsdedup db refingerprint` (stop match first) or run with the old settings")
                    source = sys.intern(source)  # a few outlets, millions of rows: one string each
                    by_id[story_id].outlets[source.lower()] += 1
                    counts["articles"] += 1
                    counts["without_hashes"] += not hashes
                    published = published.astimezone(UTC) if published is not None else None  # as UtcDateTime
                    contender = Contender(key, published, source, chars or 0)
                    scores = SAME if similarity == containment == 1.0 else Similarity(similarity, containment)
                    article = IndexedArticle(key, story_id, contender, content, method, scores)
                    # Views of the row's bytes, no copies: the index copies what it keeps.
                    yield StoredArticle(article, np.frombuffer(signature, dtype="<u4"),
                                        np.frombuffer(hashes or b"", dtype="<u4"))

            try:
                matcher.load(stories, stored())
            finally:
                # Close the stream before the connection: psycopg holds the connection's lock while a
                # stream is open, so the rollback on leaving this block waited forever after an error
                # (a refused identity hung `match` and `run` instead of reporting it).
                article_rows.close()
        if counts["without_hashes"]:
            log.warning("stored articles without shingle hashes cannot be matched again",
                        extra={"articles": counts["without_hashes"],
                               "hint": "stored before migration 0002; re-ingest them"})
        return counts["articles"]

    def export_rows(self) -> Iterator[ExportRow]:
        """One row per stored article, in input order where the lineage gives it."""
        canonical = ArticleRow.__table__.alias("canonical")
        stmt = (
            select(ArticleRow.input_id, ArticleRow.story_id, canonical.c.input_id,
                   ArticleRow.id == StoryRow.canonical_article_id, ArticleRow.similarity)
            .join(StoryRow, StoryRow.id == ArticleRow.story_id)
            .join(canonical, canonical.c.id == StoryRow.canonical_article_id)
            .order_by(ArticleRow.source_topic, ArticleRow.source_partition, ArticleRow.source_offset)
        )
        with self.engine.connect() as conn:
            for input_id, story_id, canonical_id, is_canonical, similarity in conn.execute(stmt):
                yield ExportRow(input_id, story_id, canonical_id, bool(is_canonical), similarity)

    def article_views(self) -> Iterator[tuple[ArticleView, datetime, str]]:
        """(view, published_at, the story's canonical input id) per article, keyed by input id."""
        canonical = ArticleRow.__table__.alias("canonical")
        stmt = (
            select(ArticleRow.input_id, ArticleRow.story_id, ArticleRow.title, ArticleRow.source,
                   ArticleRow.shingle_hashes, ArticleRow.published_at, canonical.c.input_id)
            .join(StoryRow, StoryRow.id == ArticleRow.story_id)
            .join(canonical, canonical.c.id == StoryRow.canonical_article_id)
        )
        with self.engine.connect() as conn:
            for input_id, story_id, title, source, hashes, published, canonical_id in conn.execute(stmt):
                view = ArticleView(input_id, story_id, title, source, array_from_bytes(hashes or b""))
                yield view, published, canonical_id

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                "articles": conn.execute(select(func.count()).select_from(ArticleRow)).scalar_one(),
                "stories": conn.execute(select(func.count()).select_from(StoryRow)
                                        .where(StoryRow.merged_into.is_(None))).scalar_one(),
                "events": conn.execute(select(func.count()).select_from(StoryEventRow)).scalar_one(),
            }

    def largest_stories(self, limit: int = 5) -> list[tuple[str, int, list[str]]]:
        """(story id, members, outlets) of the largest stories."""
        with self.engine.connect() as conn:
            top = conn.execute(
                select(StoryRow.id, StoryRow.member_count).where(StoryRow.merged_into.is_(None))
                .order_by(StoryRow.member_count.desc(), StoryRow.id).limit(limit)
            ).all()
            result = []
            for story_id, members in top:
                outlets = conn.execute(
                    select(ArticleRow.source).where(ArticleRow.story_id == story_id)
                    .distinct().order_by(ArticleRow.source)
                ).scalars().all()
                result.append((story_id, members, list(outlets)))
            return result


def _streamed(conn: Connection, statement: Select) -> Generator[tuple, None, None]:
    """The statement's rows, one at a time without holding them all, as plain tuples.

    On PostgreSQL through psycopg's ``stream`` in binary format (the server sends rows while we
    process the previous ones, and bytea arrives as is, not hex; a server-side cursor, which
    SQLAlchemy's ``yield_per`` uses, waits for each FETCH round trip instead, and a rebuild spent
    half its time so). Values come as the driver gives them, without SQLAlchemy's result types
    (timestamps are aware but in the session's zone: convert them to UTC).
    """
    if conn.dialect.name != "postgresql":
        yield from (tuple(row) for row in conn.execution_options(yield_per=10_000).execute(statement))
        return
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    cursor = conn.connection.driver_connection.cursor(binary=True)  # type: ignore[union-attr]
    try:
        yield from cursor.stream(str(compiled), compiled.params, size=1000)
    finally:
        cursor.close()


def _without(row: dict, *names: str) -> dict:
    return {k: v for k, v in row.items() if k not in names}
