"""consumers.storage.store: batch writes are idempotent by article identity (SQLite in tmp_path)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumers.matcher import DUPLICATE, Matcher
from consumers.matching import match_batch
from consumers.prepare import Lineage, PreparedArticle
from consumers.stages.fingerprint import FingerprintConfig
from consumers.stages.match import MatchConfig
from consumers.storage.database import make_engine
from consumers.storage.schema import upgrade
from consumers.storage.store import OffsetMark, StoryStore
from tests.unit.invented_news import DEPOT, FERRY, body


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoryStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'news.db'}")
    upgrade(engine)
    yield StoryStore(engine)
    engine.dispose()


def matcher_with(clock: FakeClock) -> Matcher:
    return Matcher(FingerprintConfig(), MatchConfig(), retention=timedelta(days=30), clock=clock)


def test_offsets_are_stored_with_the_batch_and_upserted(
        store: StoryStore, make_prepared: Callable[..., PreparedArticle]) -> None:
    matcher = matcher_with(FakeClock())
    matcher.process(make_prepared("ferry", body(FERRY)), Lineage("articles.fingerprinted", 2, 41))
    store.write_batch(matcher.take_changes(), matcher,
                      [OffsetMark("newsdedup-match", "articles.fingerprinted", 2, 42)], 2)
    store.write_batch(matcher.take_changes(), matcher,
                      [OffsetMark("newsdedup-match", "articles.fingerprinted", 2, 57)], 2)
    assert store.load_offsets("newsdedup-match", "articles.fingerprinted") == {2: 57}
    assert store.load_offsets("other-group", "articles.fingerprinted") == {}


def test_load_into_restores_only_stories_touched_inside_the_window(
        store: StoryStore, make_prepared: Callable[..., PreparedArticle]) -> None:
    clock = FakeClock()
    matcher = matcher_with(clock)
    matcher.process(make_prepared("ferry", body(FERRY)), Lineage("t", 0, 0))
    store.write_batch(matcher.take_changes(), matcher, [], 0)
    clock.now += timedelta(days=20)
    matcher.process(make_prepared("depot", body(DEPOT)), Lineage("t", 0, 1))
    store.write_batch(matcher.take_changes(), matcher, [], 0)

    clock.now += timedelta(days=15)  # ferry was touched 35 days ago, depot 15
    rebuilt = matcher_with(clock)
    assert store.load_into(rebuilt, [0], rebuilt.fingerprint.identity) == 1
    assert set(rebuilt.articles) == {make_prepared("depot", body(DEPOT)).key}
    assert store.load_into(matcher_with(clock), [1], rebuilt.fingerprint.identity) == 0  # other partition


def test_an_article_sent_again_after_its_story_left_the_window_does_not_break_the_batch(
        store: StoryStore, make_prepared: Callable[..., PreparedArticle]) -> None:
    # Once a story is evicted, the matcher no longer knows its articles; the same message sent
    # again (a re-scrape, a replay from an old offset) must still be a duplicate, not a second
    # "s-<key>" story, or write_batch fails on the existing ids and the partition loops forever.
    # match_batch, which every runner uses, asks the store about keys the matcher does not know.
    clock = FakeClock()
    matcher = matcher_with(clock)
    ferry = make_prepared("ferry", body(FERRY))
    matcher.process(ferry, Lineage("t", 0, 0))
    store.write_batch(matcher.take_changes(), matcher, [], 0)
    clock.now += timedelta(days=31)
    assert matcher.evict_expired() == 1

    [decision] = match_batch(matcher, store, [(ferry, Lineage("t", 0, 1))])
    store.write_batch(matcher.take_changes(), matcher, [], 0)
    assert decision.outcome == DUPLICATE
    assert store.counts() == {"articles": 1, "stories": 1, "events": 1}
