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

import heapq
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
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


SAME = Similarity(1.0, 1.0)  # shared by every canonical and exact copy rather than one object each

# Rough size of one article's Python objects outside the index's arrays (IndexedArticle, Contender,
# Similarity, key and content-hash strings, published_at, dict entries): what bench/matcher.py
# measures beyond ``CandidateIndex.nbytes`` and ~300 bytes per story, at 100k and 1M articles.
OBJECT_BYTES_PER_ARTICLE = 880


@dataclass(slots=True)
class IndexedArticle:
    """What the matcher keeps of an article besides its signature and shingle hashes (``CandidateIndex``)."""

    key: str
    story_id: str
    contender: Contender
    content_hash: str
    method: str
    similarity: Similarity  # to the story's canonical


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
        self.index = CandidateIndex(fingerprint, match)
        self.articles: dict[str, IndexedArticle] = {}
        self.stories: dict[str, Story] = {}
        self._by_content: dict[str, str] = {}
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
            kept = []
            for stored in batch:
                article = stored.article
                story = self.stories.get(article.story_id)
                if story is None or article.key in self.articles:
                    continue  # its story is outside the window or merged away; nothing can join it
                story.members.append(article.key)
                self.articles[article.key] = article
                self._by_content.setdefault(article.content_hash, article.key)
                kept.append(stored)
            if kept:
                self.index.insert_many([stored.article.key for stored in kept],
                                       np.stack([stored.signature for stored in kept]),
                                       [stored.shingle_hashes for stored in kept])

    # -- the decision ------------------------------------------------------------------------

    def process(self, article: PreparedArticle, lineage: Lineage) -> Decision:
        if article.fingerprint_identity != self.fingerprint.identity:
            raise ValueError(
                f"signature made with {article.fingerprint_identity!r}, this matcher compares "
                f"{self.fingerprint.identity!r}: run prepare and match with the same fingerprint settings")
        if article.key in self.articles:
            return Decision(DUPLICATE, self.articles[article.key].story_id)

        started = time.perf_counter()
        method, matches, num_candidates, query_seconds = self._find_matches(article)
        # Sources repeat across millions of articles: one string each (intern) instead of a copy per article.
        contender = Contender(article.key, article.published_at, sys.intern(article.source), len(article.text))
        new = IndexedArticle(key=article.key, story_id="", contender=contender, content_hash=article.content_hash,
                             method=method, similarity=SAME)
        best = max(matches, key=lambda m: m[1].score) if matches else None
        story_ids = {self.articles[key].story_id for key, _ in matches}
        # Before joining: rescoring against a new canonical reads its shingle hashes from the index.
        self._remember(new, article.signature, article.shingle_hashes)
        # Similarities computed on the shingles (not EXACT's stand-in, which an empty text would contradict).
        verified = dict(matches) if method == NEAR else {}
        story = self._join(new, story_ids, best, verified) if best else self._found(new)
        self._changes.new_articles.append((article, lineage))
        verify_seconds = time.perf_counter() - started - query_seconds
        return Decision(method, story.id, num_candidates, best[1].score if best else None, len(story.members),
                        query_seconds, verify_seconds)

    def _find_matches(self, article: PreparedArticle) -> tuple[str, list[tuple[str, Similarity]], int, float]:
        """(method, verified matches, candidates looked at, seconds spent finding candidates)."""
        same_content = self._by_content.get(article.content_hash)
        if same_content is not None:
            return EXACT, [(same_content, SAME)], 0, 0.0
        started = time.perf_counter()
        candidates = self.index.candidates(article.signature)
        query_seconds = time.perf_counter() - started
        matches = []
        hashes = article.shingle_hashes
        for key, other in candidates:
            similarity = compare(hashes, other)
            if verify(similarity, len(hashes), len(other), self.config):
                matches.append((key, similarity))
        return (NEAR if matches else CANONICAL), matches, len(candidates), query_seconds

    def _found(self, article: IndexedArticle) -> Story:
        published = article.contender.published_at
        story = Story(f"s-{article.key}", article.key, [], Counter(), published, published, self.clock())
        self.stories[story.id] = story
        self._changes.new_stories.add(story.id)
        self._add_member(story, article)
        self._event(story.id, EVENT_FOUNDED, article.key, FOUNDED)
        return story

    def _join(self, article: IndexedArticle, story_ids: set[str], best: tuple[str, Similarity],
              verified: dict[str, Similarity]) -> Story:
        # The surviving story is the one whose canonical ranks best, so a merge keeps the original.
        stories = sorted((self.stories[sid] for sid in story_ids), key=lambda s: self._rank(s.canonical_key))
        story = stories[0]
        for absorbed in stories[1:]:
            self._merge(absorbed, into=story)
        self._add_member(story, article)
        self._event(story.id, EVENT_JOINED, article.key, f"{article.method} match with {best[0]}", best[1].score)
        incumbent = self.articles[story.canonical_key].contender
        reason = challenge(article.contender, incumbent, self.preferred_sources)
        if reason is not None:
            story.canonical_key = article.key
            self._event(story.id, EVENT_CANONICAL_CHANGED, article.key, reason)
            self._rescore(story)
        else:
            # The canonical is usually one of the verified matches: its similarity is known already.
            known = verified.get(story.canonical_key)
            article.similarity = known if known is not None else self._similarity_to_canonical(article, story)
        return story

    def _merge(self, absorbed: Story, into: Story) -> None:
        for key in absorbed.members:
            member = self.articles[key]
            member.story_id = into.id
            into.members.append(key)
            self._changes.dirty_articles.add(key)
        into.outlets.update(absorbed.outlets)
        into.first_seen = min(into.first_seen, absorbed.first_seen)
        into.last_seen = max(into.last_seen, absorbed.last_seen)
        reason = challenge(self.articles[absorbed.canonical_key].contender,
                           self.articles[into.canonical_key].contender, self.preferred_sources)
        if reason is not None:
            into.canonical_key = absorbed.canonical_key
            self._event(into.id, EVENT_CANONICAL_CHANGED, absorbed.canonical_key, reason)
        absorbed.members, absorbed.outlets, absorbed.merged_into = [], Counter(), into.id
        self._event(absorbed.id, EVENT_MERGED, None, f"merged into {into.id}")
        self._event(into.id, EVENT_MERGED, None, f"absorbed {absorbed.id}")
        self._changes.dirty_stories.update((absorbed.id, into.id))
        self._changes.merged[absorbed.id] = self.stories.pop(absorbed.id)
        self._rescore(into)

    def _add_member(self, story: Story, article: IndexedArticle) -> None:
        article.story_id = story.id
        story.members.append(article.key)
        story.outlets[article.contender.source.lower()] += 1
        story.first_seen = min(story.first_seen, article.contender.published_at)
        story.last_seen = max(story.last_seen, article.contender.published_at)
        self._changes.dirty_stories.add(story.id)
        self._touch(story)

    def _rescore(self, story: Story) -> None:
        """The canonical changed: every member's similarity is now to the new canonical."""
        for key in story.members:
            member = self.articles.get(key)
            if member is not None:
                member.similarity = self._similarity_to_canonical(member, story)
                self._changes.dirty_articles.add(key)

    def _similarity_to_canonical(self, article: IndexedArticle, story: Story) -> Similarity:
        if article.key == story.canonical_key:
            return SAME
        return compare(self.index.shingle_hashes(article.key), self.index.shingle_hashes(story.canonical_key))

    def _rank(self, key: str) -> tuple:
        return rank(self.articles[key].contender, self.preferred_sources)

    # -- bookkeeping -------------------------------------------------------------------------

    def _remember(self, article: IndexedArticle, signature: np.ndarray, shingle_hashes: np.ndarray) -> None:
        self.articles[article.key] = article
        self._by_content.setdefault(article.content_hash, article.key)
        self.index.insert(article.key, signature, shingle_hashes)

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
        """The index's size: its arrays (LSH bands, shingle hashes) exactly, Python objects roughly."""
        arrays = sum(self.index.nbytes().values())
        return arrays + len(self.articles) * OBJECT_BYTES_PER_ARTICLE + len(self.stories) * 300

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
                article = self.articles.pop(key)
                self.index.remove(key)
                if self._by_content.get(article.content_hash) == key:
                    del self._by_content[article.content_hash]
                forgotten += 1
            del self.stories[story_id]
        return forgotten
