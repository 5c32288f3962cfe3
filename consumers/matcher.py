"""The matcher: the stateful core that turns prepared articles into stories.

It holds, for one shard, the LSH index and the state of every story still inside the
retention window, decides for each article whether it founds a story, joins one (exact or
near copy) or merges several, re-elects the canonical, and records what changed. It does no
I/O: the runner reads ``take_changes()`` after each batch and writes them in one transaction.

Results do not depend on arrival order (up to LSH's approximation): verification is
symmetric, an article that verifies against members of several stories merges them, and the
canonical is the best member under a total order (see ``stages.elect``).
"""

from __future__ import annotations

import hashlib
import heapq
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import NamedTuple

import numpy as np

from consumers.prepare import Lineage, PreparedArticle
from consumers.stages.elect import FOUNDED, Contender, challenge, rank
from consumers.stages.fingerprint import FingerprintConfig
from consumers.stages.match import (
    CANONICAL,
    EXACT,
    NEAR,
    CandidateIndex,
    MatchConfig,
    Similarity,
    compare,
    verify,
)

DUPLICATE = "duplicate"  # the same URL with the same content again: nothing to store

# Story event kinds (the append-only provenance log).
EVENT_FOUNDED = "founded"
EVENT_JOINED = "joined"
EVENT_CANONICAL_CHANGED = "canonical_changed"
EVENT_MERGED = "merged"


SAME = Similarity(1.0, 1.0)  # a canonical's or an exact copy's similarity to the canonical

METHODS = (CANONICAL, EXACT, NEAR)  # by their code in ArticleColumns.method
_METHOD_CODE = {method: code for code, method in enumerate(METHODS)}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

# Rough size of what the matcher holds per article beyond ``CandidateIndex.nbytes`` (the key string,
# the index's key → ordinal dict, the content dict, ArticleColumns, story member lists) and per story
# (Story, its id, outlets, expiry entries): what bench/matcher.py measures at 100k and 1M articles.
OBJECT_BYTES_PER_ARTICLE = 450
OBJECT_BYTES_PER_STORY = 700


@dataclass(slots=True)
class IndexedArticle:
    """An article's matching state as a rebuild reads it back (``StoredArticle``); the matcher keeps
    it in ``ArticleColumns``, not as one object per article."""

    key: str
    story_id: str
    contender: Contender
    content_hash: str
    method: str
    similarity: Similarity  # to the story's canonical


class ArticleState(NamedTuple):
    """What ``Matcher.articles`` hands out for an article: made from the columns on each access."""

    key: str
    story_id: str
    method: str
    similarity: Similarity  # to the story's canonical
    contender: Contender


class StoredArticle(NamedTuple):
    """An article as a rebuild hands it to ``Matcher.load``: its signature may stop after the
    b * r values the LSH bands use (the matcher keeps nothing else of it)."""

    article: IndexedArticle
    signature: np.ndarray
    shingle_hashes: np.ndarray


@dataclass(slots=True)
class Story:
    id: str
    canonical_key: str
    members: list[str]
    outlets: Counter[str]
    first_seen: datetime
    last_seen: datetime
    last_touched: datetime  # processing time of the last change: what retention counts from
    merged_into: str | None = None


@dataclass(frozen=True, slots=True)
class StoryEvent:
    story_id: str
    kind: str
    article_key: str | None
    reason: str
    similarity: float | None = None


@dataclass(slots=True)
class Changes:
    """What one batch changed, for the writer; read and reset by ``Matcher.take_changes``."""

    new_articles: list[tuple[PreparedArticle, Lineage]] = field(default_factory=list)
    new_stories: set[str] = field(default_factory=set)
    dirty_stories: set[str] = field(default_factory=set)
    dirty_articles: set[str] = field(default_factory=set)
    events: list[StoryEvent] = field(default_factory=list)
    merged: dict[str, Story] = field(default_factory=dict)  # absorbed stories, gone from the matcher

    def __bool__(self) -> bool:
        return bool(self.new_articles or self.dirty_stories or self.events)


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: str  # CANONICAL (founded), EXACT, NEAR, or DUPLICATE
    story_id: str | None
    candidates: int = 0  # LSH candidates looked at
    similarity: float | None = None  # of the best verified candidate
    story_size: int = 0  # members of the story after this article
    query_seconds: float = 0.0  # finding candidates
    verify_seconds: float = 0.0  # verifying them


def content_key(content_hash: str) -> int:
    """A 60-bit int standing for a content hash (a 64-character string costs 113 bytes, this 32).

    Hashed rather than cut, so hashes that differ only at one end stay apart; two distinct
    contents share one with odds of about n^2 / 2^61 (1 in 2 million at a million articles).
    """
    return int.from_bytes(hashlib.blake2b(content_hash.encode(), digest_size=8).digest()) >> 4


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch (a naive time is read as UTC): exact, unlike a float timestamp."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - EPOCH) // MICROSECOND


class ArticleColumns:
    """Every held article's state by its index ordinal: numbers in numpy arrays, references in lists.

    One IndexedArticle, Contender, Similarity and published_at per article cost ~450 bytes of
    Python objects; here an article costs ~60. Ordinals follow ``CandidateIndex``: appended in the
    same order, and renumbered by ``keep`` when it compacts.
    """

    def __init__(self) -> None:
        self.story: list[Story | None] = []
        self.source: list[str] = []  # interned: one string per outlet
        self.method = np.empty(1024, dtype=np.uint8)  # code in METHODS
        self.jaccard = np.empty(1024, dtype=np.float64)  # similarity to the story's canonical
        self.containment = np.empty(1024, dtype=np.float64)
        self.published = np.empty(1024, dtype=np.int64)  # to_micros(published_at)
        self.text_chars = np.empty(1024, dtype=np.int32)
        self.content = np.empty(1024, dtype=np.uint64)  # content_key

    def append(self, ordinal: int, contender: Contender, content: int, method: str) -> None:
        if ordinal != len(self.story):
            raise ValueError(f"ordinal {ordinal} out of step with the {len(self.story)} held: a bug")
        if ordinal == len(self.method):
            self._resize(2 * ordinal, None)
        self.story.append(None)
        self.source.append(contender.source)
        self.method[ordinal] = _METHOD_CODE[method]
        self.jaccard[ordinal] = self.containment[ordinal] = 1.0
        self.published[ordinal] = to_micros(contender.published_at)
        self.text_chars[ordinal] = contender.text_chars
        self.content[ordinal] = content

    def set_similarity(self, ordinal: int, similarity: Similarity) -> None:
        self.jaccard[ordinal] = similarity.jaccard
        self.containment[ordinal] = similarity.containment

    def similarity(self, ordinal: int) -> Similarity:
        return Similarity(float(self.jaccard[ordinal]), float(self.containment[ordinal]))

    def contender(self, ordinal: int, key: str) -> Contender:
        published = EPOCH + MICROSECOND * int(self.published[ordinal])
        return Contender(key, published, self.source[ordinal], int(self.text_chars[ordinal]))

    def keep(self, live: np.ndarray) -> None:
        """Keep these ordinals (increasing), renumbered 0..n-1: ``CandidateIndex``'s compaction."""
        kept = live.tolist()
        self.story = [self.story[ordinal] for ordinal in kept]
        self.source = [self.source[ordinal] for ordinal in kept]
        self._resize(max(1024, len(kept)), live)

    def _resize(self, size: int, rows: np.ndarray | None) -> None:
        """Arrays of room ``size`` holding ``rows`` of the current ones (all of them if None);
        the unfilled tail is left unwritten, so it takes no memory until used."""
        for name in ("method", "jaccard", "containment", "published", "text_chars", "content"):
            values = getattr(self, name)
            values = values[: len(self.story)] if rows is None else values[rows]
            grown = np.empty(size, dtype=values.dtype)
            grown[: len(values)] = values
            setattr(self, name, grown)


class HeldArticles(Mapping[str, ArticleState]):
    """``Matcher.articles``: a read-only mapping key → ArticleState over the index and the columns."""

    def __init__(self, matcher: Matcher) -> None:
        self._matcher = matcher

    def __getitem__(self, key: str) -> ArticleState:
        return self._matcher.state(key)

    def __contains__(self, key: object) -> bool:
        return key in self._matcher.index

    def __iter__(self) -> Iterator[str]:
        return iter(self._matcher.index)

    def __len__(self) -> int:
        return len(self._matcher.index)


class Matcher:
    def __init__(
        self,
        fingerprint: FingerprintConfig,
        match: MatchConfig,
        preferred_sources: Sequence[str] = (),
        retention: timedelta = timedelta(days=30),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        match.check(fingerprint)
        self.fingerprint = fingerprint
        self.config = match
        self.preferred_sources = tuple(source.lower() for source in preferred_sources)
        self.retention = retention
        self.clock = clock
        self.columns = ArticleColumns()
        self.index = CandidateIndex(fingerprint, match, on_compact=self.columns.keep)
        self.articles = HeldArticles(self)
        self.stories: dict[str, Story] = {}
        self._by_content: dict[int, str] = {}  # content_key → the first held article with that content
        self._expiry: list[tuple[datetime, str]] = []  # (last_touched, story id), lazily updated heap
        self._changes = Changes()

    # -- rebuild -----------------------------------------------------------------------------

    def load(self, stories: Iterable[Story], articles: Iterable[StoredArticle], chunk: int = 10_000) -> None:
        """Rebuild from stored state (stories first, then their articles, in the order they came).

        Articles go into the index ``chunk`` at a time (``CandidateIndex.insert_many``: one sort
        per chunk instead of a dict entry per band), read lazily so that a rebuild never holds
        every stored signature at once.
        """
        for story in stories:
            self.stories[story.id] = story
            story.members = []
            heapq.heappush(self._expiry, (story.last_touched, story.id))
        pending = iter(articles)
        while batch := list(islice(pending, chunk)):
            kept: dict[str, StoredArticle] = {}
            for stored in batch:
                article = stored.article
                story = self.stories.get(article.story_id)
                if story is None or article.key in self.index or article.key in kept:
                    continue  # its story is outside the window or merged away; nothing can join it
                kept[article.key] = stored
            if not kept:
                continue
            ordinals = self.index.insert_many(list(kept), np.stack([stored.signature for stored in kept.values()]),
                                              [stored.shingle_hashes for stored in kept.values()])
            for ordinal, stored in zip(ordinals.tolist(), kept.values(), strict=True):
                article = stored.article
                story = self.stories[article.story_id]
                story.members.append(article.key)
                content = content_key(article.content_hash)
                self._by_content.setdefault(content, article.key)
                self.columns.append(ordinal, article.contender, content, article.method)
                self.columns.story[ordinal] = story
                self.columns.set_similarity(ordinal, article.similarity)

    # -- the decision ------------------------------------------------------------------------

    def process(self, article: PreparedArticle, lineage: Lineage) -> Decision:
        if article.fingerprint_identity != self.fingerprint.identity:
            raise ValueError(
                f"signature made with {article.fingerprint_identity!r}, this matcher compares "
                f"{self.fingerprint.identity!r}: run prepare and match with the same fingerprint settings")
        if article.key in self.index:
            return Decision(DUPLICATE, self._story_of(article.key).id)

        started = time.perf_counter()
        hashes = article.shingle_hashes
        content = content_key(article.content_hash)
        method, matches, num_candidates, query_seconds = self._find_matches(content, article.signature, hashes)
        # Sources repeat across millions of articles: one string each (intern) instead of a copy per article.
        contender = Contender(article.key, article.published_at, sys.intern(article.source), len(article.text))
        best = max(matches, key=lambda m: m[1].score) if matches else None
        story_ids = {self._story_of(key).id for key, _ in matches}
        # Before joining: rescoring against a new canonical reads its shingle hashes from the index.
        ordinal = self._remember(contender, content, method, article.signature, hashes)
        # Similarities computed on the shingles (not EXACT's stand-in, which an empty text would contradict).
        verified = dict(matches) if method == NEAR else {}
        story = self._join(ordinal, contender, method, story_ids, best, verified) if best \
            else self._found(ordinal, contender)
        self._changes.new_articles.append((article, lineage))
        verify_seconds = time.perf_counter() - started - query_seconds
        return Decision(method, story.id, num_candidates, best[1].score if best else None, len(story.members),
                        query_seconds, verify_seconds)

    def state(self, key: str) -> ArticleState:
        """A held article's state (KeyError if it is not held); ``articles[key]`` calls this."""
        ordinal = self.index.ordinal(key)
        columns = self.columns
        story = columns.story[ordinal]
        assert story is not None
        return ArticleState(key, story.id, METHODS[columns.method[ordinal]], columns.similarity(ordinal),
                            columns.contender(ordinal, key))

    def _story_of(self, key: str) -> Story:
        story = self.columns.story[self.index.ordinal(key)]
        assert story is not None
        return story

    def _find_matches(self, content: int, signature: np.ndarray, hashes: np.ndarray
                      ) -> tuple[str, list[tuple[str, Similarity]], int, float]:
        """(method, verified matches, candidates looked at, seconds spent finding candidates)."""
        same_content = self._by_content.get(content)
        if same_content is not None:
            return EXACT, [(same_content, SAME)], 0, 0.0
        started = time.perf_counter()
        candidates = self.index.candidates(signature)
        query_seconds = time.perf_counter() - started
        matches = []
        for key, other in candidates:
            similarity = compare(hashes, other)
            if verify(similarity, len(hashes), len(other), self.config):
                matches.append((key, similarity))
        return (NEAR if matches else CANONICAL), matches, len(candidates), query_seconds

    def _found(self, ordinal: int, contender: Contender) -> Story:
        published = contender.published_at
        story = Story(f"s-{contender.key}", contender.key, [], Counter(), published, published, self.clock())
        self.stories[story.id] = story
        self._changes.new_stories.add(story.id)
        self._add_member(story, ordinal, contender)
        self._event(story.id, EVENT_FOUNDED, contender.key, FOUNDED)
        return story

    def _join(self, ordinal: int, contender: Contender, method: str, story_ids: set[str],
              best: tuple[str, Similarity], verified: dict[str, Similarity]) -> Story:
        # The surviving story is the one whose canonical ranks best, so a merge keeps the original.
        stories = sorted((self.stories[sid] for sid in story_ids), key=lambda s: self._rank(s.canonical_key))
        story = stories[0]
        for absorbed in stories[1:]:
            self._merge(absorbed, into=story)
        self._add_member(story, ordinal, contender)
        self._event(story.id, EVENT_JOINED, contender.key, f"{method} match with {best[0]}", best[1].score)
        reason = challenge(contender, self._contender(story.canonical_key), self.preferred_sources)
        if reason is not None:
            story.canonical_key = contender.key
            self._event(story.id, EVENT_CANONICAL_CHANGED, contender.key, reason)
            self._rescore(story)
        else:
            # The canonical is usually one of the verified matches: its similarity is known already.
            known = verified.get(story.canonical_key)
            self.columns.set_similarity(
                ordinal, known if known is not None else self._similarity_to_canonical(contender.key, story))
        return story

    def _merge(self, absorbed: Story, into: Story) -> None:
        for key in absorbed.members:
            self.columns.story[self.index.ordinal(key)] = into
            into.members.append(key)
            self._changes.dirty_articles.add(key)
        into.outlets.update(absorbed.outlets)
        into.first_seen = min(into.first_seen, absorbed.first_seen)
        into.last_seen = max(into.last_seen, absorbed.last_seen)
        reason = challenge(self._contender(absorbed.canonical_key), self._contender(into.canonical_key),
                           self.preferred_sources)
        if reason is not None:
            into.canonical_key = absorbed.canonical_key
            self._event(into.id, EVENT_CANONICAL_CHANGED, absorbed.canonical_key, reason)
        absorbed.members, absorbed.outlets, absorbed.merged_into = [], Counter(), into.id
        self._event(absorbed.id, EVENT_MERGED, None, f"merged into {into.id}")
        self._event(into.id, EVENT_MERGED, None, f"absorbed {absorbed.id}")
        self._changes.dirty_stories.update((absorbed.id, into.id))
        self._changes.merged[absorbed.id] = self.stories.pop(absorbed.id)
        self._rescore(into)

    def _add_member(self, story: Story, ordinal: int, contender: Contender) -> None:
        self.columns.story[ordinal] = story
        story.members.append(contender.key)
        # Interned: a story's Counter would otherwise keep a lower-cased copy per outlet.
        story.outlets[sys.intern(contender.source.lower())] += 1
        story.first_seen = min(story.first_seen, contender.published_at)
        story.last_seen = max(story.last_seen, contender.published_at)
        self._changes.dirty_stories.add(story.id)
        self._touch(story)

    def _rescore(self, story: Story) -> None:
        """The canonical changed: every member's similarity is now to the new canonical."""
        for key in story.members:
            if key in self.index:
                self.columns.set_similarity(self.index.ordinal(key), self._similarity_to_canonical(key, story))
                self._changes.dirty_articles.add(key)

    def _similarity_to_canonical(self, key: str, story: Story) -> Similarity:
        if key == story.canonical_key:
            return SAME
        return compare(self.index.shingle_hashes(key), self.index.shingle_hashes(story.canonical_key))

    def _contender(self, key: str) -> Contender:
        return self.columns.contender(self.index.ordinal(key), key)

    def _rank(self, key: str) -> tuple:
        return rank(self._contender(key), self.preferred_sources)

    # -- bookkeeping -------------------------------------------------------------------------

    def _remember(self, contender: Contender, content: int, method: str, signature: np.ndarray,
                  hashes: np.ndarray) -> int:
        """Hold a new article (its story is set by the caller); returns its ordinal."""
        self._by_content.setdefault(content, contender.key)
        ordinal = self.index.insert(contender.key, signature, hashes)
        self.columns.append(ordinal, contender, content, method)
        return ordinal

    def _event(self, story_id: str, kind: str, article_key: str | None, reason: str,
               similarity: float | None = None) -> None:
        self._changes.events.append(StoryEvent(story_id, kind, article_key, reason, similarity))

    def _touch(self, story: Story) -> None:
        story.last_touched = self.clock()
        heapq.heappush(self._expiry, (story.last_touched, story.id))
        if len(self._expiry) > 2 * len(self.stories) + 1000:
            # Every touch adds an entry (~100 bytes) and only eviction pops them: rebuilt from the
            # stories now and then, the heap stays about one entry per story.
            self._expiry = [(s.last_touched, s.id) for s in self.stories.values()]
            heapq.heapify(self._expiry)

    def estimated_bytes(self) -> int:
        """The index's size: its arrays (LSH bands, shingle hashes) exactly, the rest roughly."""
        arrays = sum(self.index.nbytes().values())
        return arrays + len(self.index) * OBJECT_BYTES_PER_ARTICLE + len(self.stories) * OBJECT_BYTES_PER_STORY

    def story(self, story_id: str, changes: Changes) -> Story:
        """A story's current state, including one merged away during the batch of ``changes``."""
        return self.stories.get(story_id) or changes.merged[story_id]

    def take_changes(self) -> Changes:
        """Hand this batch's changes to the writer and start a new batch."""
        changes, self._changes = self._changes, Changes()
        return changes

    def evict_expired(self) -> int:
        """Forget stories that nothing joined for the retention window; returns articles forgotten.

        Retention counts processing time, not published_at: partitions are read unevenly, so
        publication times arrive out of order, and a replay of old news must not evict the
        stories it is building. Call between batches, after the writer ran.
        """
        cutoff = self.clock() - self.retention
        forgotten = 0
        while self._expiry and self._expiry[0][0] < cutoff:
            touched, story_id = heapq.heappop(self._expiry)
            story = self.stories.get(story_id)
            if story is None or story.last_touched != touched:
                continue  # merged away, or touched again since: a newer heap entry stands for it
            for key in story.members:
                ordinal = self.index.ordinal(key)
                content = int(self.columns.content[ordinal])
                if self._by_content.get(content) == key:
                    del self._by_content[content]
                self.columns.story[ordinal] = None  # lets the story go before the index compacts
                self.index.remove(key)  # last: it may compact, renumbering the columns
                forgotten += 1
            del self.stories[story_id]
        return forgotten
