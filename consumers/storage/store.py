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
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from consumers.evaluation import ArticleView
from consumers.matcher import SAME, ArticleState, Changes, IndexedArticle, Matcher, StoredArticle, Story
from consumers.prepare import Lineage, PreparedArticle, fingerprint_again
from consumers.stages.elect import Contender
from consumers.stages.fingerprint import FingerprintConfig, minhash_signature
from consumers.stages.match import MatchConfig, Similarity, lsh_bands
from consumers.storage.codec import band_values, decode_band_values, decode_shingle_hashes, encode_shingle_hashes
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


@dataclass(slots=True)
class PruneResult:
    """What a prune removed (or, dry, would remove)."""

    stories: int = 0  # story rows deleted with all their articles and events
    articles: int = 0
    events: int = 0
    stripped: int = 0  # articles past the matcher's window whose signature and shingle hashes were dropped
    held: int = 0  # stories past retention kept: an event of theirs is not published to stories.events yet


@dataclass(frozen=True, slots=True)
class GrowthStats:
    """How large the database is, for the growth metrics (consumers/growth.py)."""

    database_bytes: int
    rows: dict[str, int]  # per table; PostgreSQL's planner estimates (pg_class.reltuples), exact on SQLite
    oldest_article_stored_at: datetime | None


class StoryStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- writes ------------------------------------------------------------------------------

    def write_batch(self, changes: Changes, matcher: Matcher, offsets: Sequence[OffsetMark],
                    match_partition: int) -> None:
        """Store one batch and its offsets in a single transaction (see the module docstring)."""
        now = datetime.now(UTC)
        new_keys = {prepared.key for prepared, _ in changes.new_articles}
        bands, rows_per_band = matcher.index.bands
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
                    self._article_values(prepared, lineage, matcher.articles[prepared.key], match_partition, now,
                                         bands * rows_per_band)
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
                        match_partition: int, now: datetime, signature_values: int) -> dict:
        """The article's row; of its signature only the ``signature_values`` the LSH bands use (codec.py)."""
        return {
            "id": prepared.key, "story_id": indexed.story_id, "input_id": prepared.input_id,
            "url": prepared.url, "url_normalised": prepared.url_normalised, "source": prepared.source,
            "title": prepared.title, "body": prepared.text, "body_chars": len(prepared.text), "lang": prepared.lang,
            "content_hash": prepared.content_hash, "published_at": prepared.published_at,
            "scraped_at": prepared.scraped_at, "num_shingles": prepared.num_shingles,
            "signature": band_values(prepared.signature, signature_values),
            "shingle_hashes": encode_shingle_hashes(prepared.shingle_hashes),
            "fingerprint_identity": prepared.fingerprint_identity, "match_method": indexed.method,
            "similarity": indexed.similarity.jaccard, "containment": indexed.similarity.containment,
            "source_topic": lineage.topic, "source_partition": lineage.partition, "source_offset": lineage.offset,
            "source_timestamp": (datetime.fromtimestamp(lineage.timestamp_ms / 1000, UTC)
                                 if lineage.timestamp_ms is not None else None),
            "match_partition": match_partition, "stored_at": now, "extra": prepared.metadata,
        }

    def refingerprint(self, config: FingerprintConfig, batch_rows: int = 1000,
                      on_batch: Callable[[int], None] | None = None,
                      match: MatchConfig | None = None) -> RefingerprintResult:
        """Recompute signature, shingle hashes and shingle count of every article stored under
        another fingerprint identity than ``config``'s, from its stored text, in place.

        Batches of ``batch_rows`` rows, one transaction each, in primary-key order (keyset paging:
        neither a million rows in memory nor one long transaction). Rows already at the identity are
        never read, so a run that was interrupted continues where it stopped when started again.
        A row whose text no longer gives its stored content hash is refused and left as it was: the
        content hash is part of the article key, and a different one means normalisation changed,
        which re-fingerprinting cannot repair. Stories are not re-matched.
        ``on_batch(rows)`` is told how many rows each batch looked at. Of the signature the values the LSH
        bands of ``match`` use are stored (default: the default settings'; a matcher using more recomputes them).
        """
        identity = config.identity
        bands, rows_per_band = lsh_bands(config, match or MatchConfig())
        update_row = (update(ArticleRow)
                      # Only a row still as we read it: nothing else rewrites fingerprints, but a second
                      # refingerprint run at the same time must not write twice.
                      .where(ArticleRow.id == bindparam("b_id"), ArticleRow.fingerprint_identity == bindparam("b_old")))
        updated, refused, examples = 0, 0, list[str]()
        last_key = ""  # article keys are hex digests: every one sorts after ""
        while True:
            with self.engine.begin() as conn:
                rows = conn.execute(
                    select(ArticleRow.id, ArticleRow.body, ArticleRow.content_hash, ArticleRow.fingerprint_identity,
                           ArticleRow.signature.is_(None), ArticleRow.num_shingles)
                    .where(ArticleRow.id > last_key, ArticleRow.fingerprint_identity != identity)
                    .order_by(ArticleRow.id).limit(batch_rows)
                ).all()
                if not rows:
                    break
                changes = []
                for key, body, stored_hash, old_identity, stripped, num_shingles in rows:
                    if stripped:
                        # Prune dropped its verification data (past the window): it stays without, under the
                        # new identity, instead of growing back on every change of fingerprint.
                        changes.append({"b_id": key, "b_old": old_identity, "signature": None, "shingle_hashes": None,
                                        "num_shingles": num_shingles, "fingerprint_identity": identity})
                        continue
                    fp = fingerprint_again(body, stored_hash, config)
                    if fp is None:
                        refused += 1
                        if len(examples) < 5:
                            examples.append(key)
                        continue
                    changes.append({"b_id": key, "b_old": old_identity,
                                    "signature": band_values(fp.signature, bands * rows_per_band),
                                    "shingle_hashes": encode_shingle_hashes(fp.shingle_hashes),
                                    "num_shingles": fp.num_shingles, "fingerprint_identity": identity})
                if changes:
                    conn.execute(update_row, changes)
                updated += len(changes)
                last_key = rows[-1][0]
            if on_batch is not None:
                on_batch(len(rows))
        return RefingerprintResult(updated, refused, tuple(examples))

    # -- retention ---------------------------------------------------------------------------

    def prune(self, delete_before: datetime | None, strip_before: datetime, batch_stories: int = 500,
              dry_run: bool = False, on_batch: Callable[[int], None] | None = None,
              outbox: bool = True) -> PruneResult:
        """Apply retention, a short transaction per ``batch_stories`` stories; see README "Retention".

        1. A story whose last change (``updated_at``) is before ``delete_before`` goes with all its articles
           and events: every member joined it before that change, so all of them are past retention, and no
           story is ever left with part of its members, a canonical that is gone or a partial event log.
           A story merged into another is deleted only once that other story is gone (its articles moved
           there, and the other's log names it). A story any of whose events is not yet published to
           stories.events (id above its partition's ``event_relay.published_id``) is kept (``held``) and
           deleted by a later run; the event delete itself is also bounded by the mark.
        2. Articles of stories last changed before ``strip_before`` (past the matcher's window) lose their
           signature and shingle hashes: a matcher never loads them again, and the text stays.

        The candidates are read in ``updated_at`` order; each batch locks its stories (SKIP LOCKED on
        PostgreSQL: a row a writer holds waits for the next run) and checks their age again under the lock.
        Every batch commits what it did, so an interrupted prune continues where it stopped when run again.
        ``dry_run`` counts without changing anything (one pass: stories merged into stories that this prune
        would delete are counted by the run after). ``on_batch(n)`` is told each batch's number of stories.
        ``outbox=False``: no relay publishes this database's events (embedded mode writes them for no one), so
        none holds a story.
        """
        result = PruneResult()
        if delete_before is not None:
            while True:  # passes: a merged story becomes deletable once the story it merged into is gone
                before = result.stories
                self._prune_pass(delete_before, batch_stories, dry_run, on_batch, result, outbox)
                if dry_run or result.stories == before:
                    break
                result.held = 0  # the next pass sees the held stories again
        self._strip_pass(strip_before, delete_before, batch_stories, dry_run, on_batch, result)
        return result

    def prune_candidates(self, delete_before: datetime | None, strip_before: datetime) -> int:
        """How many stories a prune will look at (for a progress bar)."""
        latest = max(strip_before, delete_before) if delete_before is not None else strip_before
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(StoryRow)
                                .where(StoryRow.updated_at < latest)).scalar_one()

    def _page(self, conn: Connection, before: datetime, after: tuple[datetime, str] | None, limit: int,
              only_deletable: bool, lock: bool) -> list[tuple[str, datetime]]:
        """The next ``limit`` stories last changed before ``before``, after ``after`` in (updated_at, id)."""
        conditions = [StoryRow.updated_at < before]
        if after is not None:
            conditions.append(or_(StoryRow.updated_at > after[0],
                                  and_(StoryRow.updated_at == after[0], StoryRow.id > after[1])))
        if not only_deletable:  # the strip pass: stories not stripped since their last change
            conditions.append(or_(StoryRow.stripped_at.is_(None), StoryRow.stripped_at < StoryRow.updated_at))
        if only_deletable:
            target = StoryRow.__table__.alias("target")
            conditions.append(or_(StoryRow.merged_into.is_(None),
                                  ~exists().where(target.c.id == StoryRow.merged_into)))
        statement = (select(StoryRow.id, StoryRow.updated_at).where(*conditions)
                     .order_by(StoryRow.updated_at, StoryRow.id).limit(limit))
        if lock:
            statement = statement.with_for_update(of=StoryRow, skip_locked=True)
        return [(sid, updated) for sid, updated in conn.execute(statement)]

    def _prune_pass(self, before: datetime, limit: int, dry_run: bool, on_batch: Callable[[int], None] | None,
                    result: PruneResult, outbox: bool) -> None:
        after: tuple[datetime, str] | None = None
        while True:
            with self.engine.begin() as conn:
                page = self._page(conn, before, after, limit, only_deletable=True, lock=not dry_run)
                if not page:
                    return
                after = (page[-1][1], page[-1][0])
                ids = [sid for sid, _ in page]
                # Stories with an event the relay has not published: deleting it would lose it to stories.events.
                unpublished = select(StoryEventRow.story_id).outerjoin(
                    EventRelayRow, EventRelayRow.match_partition == StoryEventRow.match_partition).where(
                    StoryEventRow.story_id.in_(ids),
                    or_(EventRelayRow.published_id.is_(None), StoryEventRow.id > EventRelayRow.published_id))
                held = set(conn.execute(unpublished.distinct()).scalars()) if outbox else set()
                ids = [sid for sid in ids if sid not in held]
                result.held += len(held)
                if ids and dry_run:
                    result.articles += conn.execute(select(func.count()).select_from(ArticleRow)
                                                    .where(ArticleRow.story_id.in_(ids))).scalar_one()
                    result.events += conn.execute(select(func.count()).select_from(StoryEventRow)
                                                  .where(StoryEventRow.story_id.in_(ids))).scalar_one()
                    result.stories += len(ids)
                elif ids:
                    mark = (select(EventRelayRow.published_id)
                            .where(EventRelayRow.match_partition == StoryEventRow.match_partition).scalar_subquery())
                    published = (StoryEventRow.id <= mark,) if outbox else ()
                    result.events += conn.execute(delete(StoryEventRow).where(
                        StoryEventRow.story_id.in_(ids), *published)).rowcount
                    result.articles += conn.execute(delete(ArticleRow).where(ArticleRow.story_id.in_(ids))).rowcount
                    result.stories += conn.execute(delete(StoryRow).where(StoryRow.id.in_(ids),
                                                                          StoryRow.updated_at < before)).rowcount
            if on_batch is not None:
                on_batch(len(page))

    def _strip_pass(self, before: datetime, not_before: datetime | None, limit: int, dry_run: bool,
                    on_batch: Callable[[int], None] | None, result: PruneResult) -> None:
        after: tuple[datetime, str] | None = (not_before, "") if not_before is not None else None
        while True:
            with self.engine.begin() as conn:
                page = self._page(conn, before, after, limit, only_deletable=False, lock=not dry_run)
                if not page:
                    return
                after = (page[-1][1], page[-1][0])
                ids = [sid for sid, _ in page]
                verified = (ArticleRow.story_id.in_(ids),
                            or_(ArticleRow.signature.is_not(None), ArticleRow.shingle_hashes.is_not(None)))
                if dry_run:
                    result.stripped += conn.execute(select(func.count()).select_from(ArticleRow)
                                                    .where(*verified)).scalar_one()
                else:
                    result.stripped += conn.execute(update(ArticleRow).where(*verified)
                                                    .values(signature=None, shingle_hashes=None)).rowcount
                    conn.execute(update(StoryRow).where(StoryRow.id.in_(ids)).values(stripped_at=datetime.now(UTC)))
            if on_batch is not None:
                on_batch(len(page))

    def growth(self) -> GrowthStats:
        """Database size, rows per table and the oldest stored article's arrival: cheap enough to ask every
        minute of a database of 100M articles (catalog reads and one index probe, never a count)."""
        tables = [table.name for table in (StoryRow.__table__, ArticleRow.__table__, StoryEventRow.__table__)]
        with self.engine.connect() as conn:
            # Every article arrives in a story created no later than it, and story rows go only with
            # their articles: the oldest story's creation is the oldest stored article's arrival.
            oldest = conn.execute(select(func.min(StoryRow.created_at))).scalar_one()
            if self.engine.dialect.name == "postgresql":
                size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
                rows = {name: max(0, int(conn.execute(
                    text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"),
                    {"name": name}).scalar_one_or_none() or 0)) for name in tables}
            else:
                size = (conn.execute(text("PRAGMA page_count")).scalar_one()
                        * conn.execute(text("PRAGMA page_size")).scalar_one())
                rows = {name: conn.execute(select(func.count()).select_from(text(name))).scalar_one()
                        for name in tables}
        if isinstance(oldest, str):  # SQLite hands back text for an aggregate of a DateTime column
            oldest = datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return GrowthStats(int(size), rows, oldest)

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
        bands use are read (a row stores those since migration 0005, all 128 before); a row storing
        fewer (written under settings with fewer bands) has them recomputed from its shingle hashes.
        """
        bands, rows_per_band = matcher.index.bands
        signature_values = bands * rows_per_band
        stripped_bands = np.full(signature_values, 0xFFFFFFFF, dtype=np.uint32)
        cutoff = matcher.clock() - matcher.retention
        live = (StoryRow.match_partition.in_(match_partitions), StoryRow.merged_into.is_(None),
                StoryRow.updated_at >= cutoff)
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # One scan of the window, read once: compiling it (JIT) took 1.2 to 2.7 s of the 14 to 46 s the
                # server spent on a 2M-row rebuild (EXPLAIN ANALYZE). LOCAL: ends with this read's transaction.
                conn.execute(text("SET LOCAL jit = off"))
            story_rows = conn.execute(
                select(StoryRow.id, StoryRow.canonical_article_id, StoryRow.first_seen_at, StoryRow.last_seen_at,
                       StoryRow.updated_at).where(*live)
            ).all()
            stories = [Story(sid, canonical, [], Counter(), first, last, touched)
                       for sid, canonical, first, last, touched in story_rows]
            article_rows = _streamed(conn, (
                select(ArticleRow.id, ArticleRow.story_id, ArticleRow.published_at, ArticleRow.source,
                       func.coalesce(ArticleRow.body_chars, func.length(ArticleRow.body)),
                       func.substr(ArticleRow.signature, 1, 4 * signature_values),
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
                    if identity != fingerprint_identity and signature is not None:
                        raise ValueError(
                            f"stored signatures were made with {identity!r}, this build uses {fingerprint_identity!r}"
                            f": run `newsdedup db refingerprint` (stop match first) or run with the old settings")
                    source = sys.intern(source)  # a few outlets, millions of rows: one string each
                    by_id[story_id].outlets[source.lower()] += 1
                    counts["articles"] += 1
                    counts["without_hashes"] += not hashes
                    shingles = decode_shingle_hashes(hashes)
                    if signature is None:
                        # Prune dropped its verification data (its story was past the window then; a window
                        # made longer since brings it back). It stays a member, for the story's counts and
                        # canonical, under band values no MinHash gives (a minimum is all ones only if every
                        # hash is), so it is nobody's candidate.
                        values = stripped_bands
                    elif len(signature) < 4 * signature_values:
                        counts["recomputed"] += 1
                        values = minhash_signature(shingles, matcher.fingerprint)[:signature_values]
                    else:
                        values = decode_band_values(signature)  # a view of the row's bytes: the index copies it
                    published = published.astimezone(UTC) if published is not None else None  # as UtcDateTime
                    contender = Contender(key, published, source, chars or 0)
                    scores = SAME if similarity == containment == 1.0 else Similarity(similarity, containment)
                    article = IndexedArticle(key, story_id, contender, content, method, scores)
                    yield StoredArticle(article, values, shingles)

            try:
                matcher.load(stories, stored())
            finally:
                # Close the stream before the connection: psycopg holds the connection's lock while a
                # stream is open, so the rollback on leaving this block waited forever after an error
                # (a refused identity hung `match` and `run` instead of reporting it).
                article_rows.close()
        if counts["recomputed"]:
            log.info("band values recomputed from shingle hashes: rows stored under settings with fewer LSH bands",
                     extra={"articles": counts["recomputed"], "bands": bands, "rows_per_band": rows_per_band})
        if counts["without_hashes"]:
            log.warning("stored articles without shingle hashes cannot be matched again",
                        extra={"articles": counts["without_hashes"],
                               "hint": "stored before migration 0002 (re-ingest them), or `newsdedup db prune` "
                                       "dropped their verification data: they stay members, new copies match "
                                       "other members"})
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
                view = ArticleView(input_id, story_id, title, source, decode_shingle_hashes(hashes))
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
