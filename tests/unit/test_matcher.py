"""consumers.matcher: articles → stories, independent of arrival order, with provenance events."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from consumers.matcher import (
    DUPLICATE,
    EVENT_CANONICAL_CHANGED,
    EVENT_FOUNDED,
    EVENT_JOINED,
    EVENT_MERGED,
    ArticleColumns,
    IndexedArticle,
    Matcher,
    StoredArticle,
    Story,
    content_key,
)
from consumers.prepare import Lineage, PreparedArticle, prepare_article
from consumers.stages.elect import EARLIER_PUBLISHED, PREFERRED_SOURCE, Contender
from consumers.stages.fingerprint import FingerprintConfig
from consumers.stages.match import CANONICAL, EXACT, NEAR, MatchConfig, Similarity
from ingest.contract import Article
from tests.unit.invented_news import DEPOT, FERRY, T0, TURTLES, body, with_chrome

FP = FingerprintConfig()
LINEAGE = Lineage("file:test.jsonl", 0, 0)


def light_edits(paragraphs: Sequence[str]) -> list[str]:
    """What a copy desk does to wire copy: a few words changed, a clause added."""
    return [p.replace("Tuesday", "Tuesday morning").replace("frustration", "anger and frustration")
             .replace("at least nine days", "at least nine more days") for p in paragraphs]


@pytest.fixture
def matcher() -> Matcher:
    return Matcher(FP, MatchConfig(), preferred_sources=("BaylineWire.example",))


@pytest.fixture
def corpus(make_prepared: Callable[..., PreparedArticle]) -> dict[str, PreparedArticle]:
    """Two syndicated stories and an unrelated one, keyed by input id."""
    articles = [
        make_prepared("ferry-wire", body(FERRY), hours=0, source="baylinewire.example"),
        make_prepared("ferry-chrome", with_chrome(light_edits(FERRY)), hours=1, source="tidewater.example"),
        make_prepared("ferry-trimmed", body(FERRY[:2]), hours=3, source="northfield.example"),
        make_prepared("ferry-dropped", body(light_edits(FERRY[:2] + FERRY[3:])), hours=5, source="gazette.example"),
        make_prepared("depot-original", body(DEPOT), hours=0.5, source="brennockpost.example"),
        make_prepared("depot-chrome", with_chrome(DEPOT), hours=2, source="tidewater.example"),
        make_prepared("turtles", body(TURTLES), hours=4, source="coastwatch.example"),
    ]
    return {article.input_id: article for article in articles}


def feed(matcher: Matcher, articles: Sequence[PreparedArticle]) -> list[str]:
    return [matcher.process(article, LINEAGE).outcome for article in articles]


def partition(matcher: Matcher, articles: Sequence[PreparedArticle]) -> frozenset[frozenset[str]]:
    """The matcher's stories as sets of input ids."""
    ids = {article.key: article.input_id for article in articles}
    return frozenset(frozenset(ids[key] for key in story.members) for story in matcher.stories.values())


def stored(matcher: Matcher, article: PreparedArticle) -> StoredArticle:
    """The article as a rebuild reads it back: the matcher's record, the signature and the hashes."""
    state = matcher.articles[article.key]
    return StoredArticle(IndexedArticle(article.key, state.story_id, state.contender, article.content_hash,
                                        state.method, state.similarity),
                         article.signature.copy(), article.shingle_hashes.copy())


def story_of(matcher: Matcher, article: PreparedArticle) -> Story:
    return matcher.stories[matcher.articles[article.key].story_id]


# -- one story, one outcome at a time ------------------------------------------------------------

def test_copies_join_the_original_and_unrelated_articles_found_stories(
        matcher: Matcher, corpus: dict[str, PreparedArticle]) -> None:
    order = ["ferry-wire", "depot-original", "ferry-chrome", "depot-chrome", "ferry-trimmed", "turtles",
             "ferry-dropped"]
    outcomes = feed(matcher, [corpus[i] for i in order])
    assert dict(zip(order, outcomes, strict=True)) == {
        "ferry-wire": CANONICAL, "depot-original": CANONICAL, "ferry-chrome": NEAR, "depot-chrome": EXACT,
        "ferry-trimmed": NEAR, "turtles": CANONICAL, "ferry-dropped": NEAR,
    }
    assert partition(matcher, list(corpus.values())) == {
        frozenset({"ferry-wire", "ferry-chrome", "ferry-trimmed", "ferry-dropped"}),
        frozenset({"depot-original", "depot-chrome"}),
        frozenset({"turtles"}),
    }
    ferry = story_of(matcher, corpus["ferry-wire"])
    assert ferry.canonical_key == corpus["ferry-wire"].key
    assert ferry.outlets == Counter({"baylinewire.example": 1, "tidewater.example": 1, "northfield.example": 1,
                                     "gazette.example": 1})
    assert (ferry.first_seen, ferry.last_seen) == (T0, T0 + timedelta(hours=5))


def test_decision_reports_the_story_and_the_similarity(matcher: Matcher, corpus: dict[str, PreparedArticle]) -> None:
    first = matcher.process(corpus["ferry-wire"], LINEAGE)
    assert (first.outcome, first.candidates, first.similarity) == (CANONICAL, 0, None)
    trimmed = matcher.process(corpus["ferry-trimmed"], LINEAGE)
    assert trimmed.story_id == first.story_id
    assert trimmed.candidates == 1
    assert trimmed.similarity is not None and trimmed.similarity >= 0.8  # containment of the trimmed copy


def test_events_record_founding_and_joining(matcher: Matcher, corpus: dict[str, PreparedArticle]) -> None:
    feed(matcher, [corpus["ferry-wire"], corpus["ferry-chrome"]])
    events = matcher.take_changes().events
    assert [(e.kind, e.article_key) for e in events] == [
        (EVENT_FOUNDED, corpus["ferry-wire"].key), (EVENT_JOINED, corpus["ferry-chrome"].key)]
    assert events[1].reason == f"near match with {corpus['ferry-wire'].key}"
    assert 0.5 <= events[1].similarity <= 1.0


def test_the_same_key_twice_is_a_duplicate_with_no_changes(matcher: Matcher,
                                                            corpus: dict[str, PreparedArticle]) -> None:
    first = matcher.process(corpus["ferry-wire"], LINEAGE)
    assert matcher.take_changes()
    again = matcher.process(corpus["ferry-wire"], Lineage("file:test.jsonl", 0, 99))
    assert again.outcome == DUPLICATE
    assert again.story_id == first.story_id
    changes = matcher.take_changes()
    assert not changes
    assert changes.new_articles == [] and changes.events == [] and changes.new_stories == set()
    assert len(matcher.articles) == 1


def test_same_url_with_tracking_parameters_is_a_duplicate(
        matcher: Matcher, make_prepared: Callable[..., PreparedArticle]) -> None:
    feed(matcher, [make_prepared("a", body(DEPOT), url="https://brennockpost.example/depot")])
    again = make_prepared("b", body(DEPOT), url="https://brennockpost.example/depot?utm_source=rss")
    assert feed(matcher, [again]) == [DUPLICATE]


def test_exact_copy_under_another_url_is_exact(matcher: Matcher, make_prepared: Callable[..., PreparedArticle]) -> None:
    original = make_prepared("a", body(DEPOT), url="https://brennockpost.example/depot")
    copy = make_prepared("b", with_chrome(DEPOT), hours=2, url="https://tidewater.example/brennock-depot")
    first = matcher.process(original, LINEAGE)
    decision = matcher.process(copy, LINEAGE)
    assert decision.outcome == EXACT
    assert decision.story_id == first.story_id
    assert decision.similarity == 1.0
    assert matcher.articles[copy.key].method == EXACT


# -- arrival order -------------------------------------------------------------------------------

def _orders(ids: list[str], count: int) -> list[list[str]]:
    rng = random.Random(20240702)
    orders = [list(ids), list(reversed(ids))]
    while len(orders) < count:
        order = list(ids)
        rng.shuffle(order)
        orders.append(order)
    return orders


def test_partition_and_canonical_do_not_depend_on_arrival_order(corpus: dict[str, PreparedArticle]) -> None:
    expected = {
        frozenset({"ferry-wire", "ferry-chrome", "ferry-trimmed", "ferry-dropped"}),
        frozenset({"depot-original", "depot-chrome"}),
        frozenset({"turtles"}),
    }
    for order in _orders(list(corpus), 40):
        matcher = Matcher(FP, MatchConfig())
        feed(matcher, [corpus[i] for i in order])
        assert partition(matcher, list(corpus.values())) == expected, order
        by_key = {article.key: article for article in corpus.values()}
        for story in matcher.stories.values():
            members = [by_key[key] for key in story.members]
            earliest = min(members, key=lambda a: a.published_at)
            assert story.canonical_key == earliest.key, order


def test_late_arriving_original_becomes_canonical(matcher: Matcher, corpus: dict[str, PreparedArticle]) -> None:
    feed(matcher, [corpus["ferry-chrome"], corpus["ferry-trimmed"]])
    matcher.take_changes()
    decision = matcher.process(corpus["ferry-wire"], LINEAGE)
    assert decision.outcome == NEAR
    story = matcher.stories[decision.story_id]
    assert story.canonical_key == corpus["ferry-wire"].key
    assert story.first_seen == T0
    changes = matcher.take_changes()
    changed = [e for e in changes.events if e.kind == EVENT_CANONICAL_CHANGED]
    assert [(e.article_key, e.reason) for e in changed] == [(corpus["ferry-wire"].key, EARLIER_PUBLISHED)]
    assert {corpus["ferry-chrome"].key, corpus["ferry-trimmed"].key} <= changes.dirty_articles  # rescored


def test_late_original_rescores_members_against_the_new_canonical(
        corpus: dict[str, PreparedArticle]) -> None:
    # Members' similarity is to the canonical, so it must not depend on arrival order.
    in_order = Matcher(FP, MatchConfig())
    feed(in_order, [corpus["ferry-wire"], corpus["ferry-trimmed"]])
    late = Matcher(FP, MatchConfig())
    feed(late, [corpus["ferry-trimmed"], corpus["ferry-wire"]])
    expected = in_order.articles[corpus["ferry-trimmed"].key].similarity
    assert expected.jaccard < 0.6  # the trimmed copy keeps two of five paragraphs
    assert late.articles[corpus["ferry-trimmed"].key].similarity == expected


def test_preferred_source_wins_a_tie_in_either_order(make_prepared: Callable[..., PreparedArticle]) -> None:
    wire = make_prepared("wire", body(DEPOT), source="BaylineWire.example")
    paper = make_prepared("paper", body([*DEPOT, "The council will publish the full plans online."]),
                          source="brennockpost.example")
    for order in ([wire, paper], [paper, wire]):
        matcher = Matcher(FP, MatchConfig(), preferred_sources=("baylinewire.example",))
        feed(matcher, order)
        assert story_of(matcher, wire).canonical_key == wire.key
    events = matcher.take_changes().events
    assert [(e.kind, e.reason) for e in events if e.kind == EVENT_CANONICAL_CHANGED] == [
        (EVENT_CANONICAL_CHANGED, PREFERRED_SOURCE)]


# -- merging -------------------------------------------------------------------------------------

def test_an_article_that_bridges_two_stories_merges_them(
        matcher: Matcher, make_prepared: Callable[..., PreparedArticle]) -> None:
    # Two outlets each carried a different part of the wire story; the full text arrives last.
    head = make_prepared("head", body(FERRY[:2]), hours=2, source="northfield.example")
    tail = make_prepared("tail", body(FERRY[3:]), hours=1, source="gazette.example")
    full = make_prepared("full", body(FERRY), hours=0, source="baylinewire.example")
    assert feed(matcher, [head, tail]) == [CANONICAL, CANONICAL]
    assert len(matcher.stories) == 2
    matcher.take_changes()

    decision = matcher.process(full, LINEAGE)
    assert decision.outcome == NEAR
    assert list(matcher.stories) == [decision.story_id]
    story = matcher.stories[decision.story_id]
    assert sorted(story.members) == sorted([head.key, tail.key, full.key])
    assert story.canonical_key == full.key
    assert story.outlets == Counter({"northfield.example": 1, "gazette.example": 1, "baylinewire.example": 1})
    # The survivor is the story whose canonical ranked best (tail: published earlier than head).
    assert decision.story_id == f"s-{tail.key}"

    changes = matcher.take_changes()
    merged = [e for e in changes.events if e.kind == EVENT_MERGED]
    absorbed_id = f"s-{head.key}"
    assert {(e.story_id, e.reason) for e in merged} == {
        (absorbed_id, f"merged into {decision.story_id}"), (decision.story_id, f"absorbed {absorbed_id}")}
    assert changes.merged[absorbed_id].merged_into == decision.story_id
    assert changes.merged[absorbed_id].members == []
    assert head.key in changes.dirty_articles
    assert {absorbed_id, decision.story_id} <= changes.dirty_stories
    assert matcher.story(absorbed_id, changes).merged_into == decision.story_id
    assert all(matcher.articles[k].story_id == decision.story_id for k in (head.key, tail.key, full.key))


def test_merge_is_order_independent(make_prepared: Callable[..., PreparedArticle]) -> None:
    parts = [
        make_prepared("head", body(FERRY[:2]), hours=2, source="northfield.example"),
        make_prepared("tail", body(FERRY[3:]), hours=1, source="gazette.example"),
        make_prepared("full", body(FERRY), hours=0, source="baylinewire.example"),
    ]
    for order in _orders(["head", "tail", "full"], 6):
        by_id = {p.input_id: p for p in parts}
        matcher = Matcher(FP, MatchConfig())
        feed(matcher, [by_id[i] for i in order])
        assert len(matcher.stories) == 1, order
        assert next(iter(matcher.stories.values())).canonical_key == by_id["full"].key


# -- retention (counts processing time, from an injected clock) ----------------------------------

class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 9, 1, 12, 0, tzinfo=UTC))


def test_evict_expired_forgets_stories_older_than_the_window(
        clock: FakeClock, make_prepared: Callable[..., PreparedArticle]) -> None:
    matcher = Matcher(FP, MatchConfig(), retention=timedelta(days=7), clock=clock)
    old = make_prepared("old", body(FERRY), hours=0)
    old_copy = make_prepared("old-copy", body(light_edits(FERRY)), hours=1)
    feed(matcher, [old, old_copy])
    clock.advance(days=8)
    recent = make_prepared("recent", body(DEPOT), hours=2)
    feed(matcher, [recent])
    assert story_of(matcher, recent).last_touched == clock.now

    assert matcher.evict_expired() == 2
    assert set(matcher.articles) == {recent.key}
    assert list(matcher.stories) == [story_of(matcher, recent).id]
    assert len(matcher.index) == 1
    assert matcher.evict_expired() == 0  # nothing left to evict

    # A further copy of the forgotten story can no longer join it.
    late_copy = make_prepared("late-copy", with_chrome(FERRY), hours=3)
    assert matcher.process(late_copy, LINEAGE).outcome == CANONICAL


def test_nothing_is_evicted_inside_the_window(clock: FakeClock, make_prepared: Callable[..., PreparedArticle]) -> None:
    matcher = Matcher(FP, MatchConfig(), retention=timedelta(days=7), clock=clock)
    feed(matcher, [make_prepared("ferry", body(FERRY)), make_prepared("depot", body(DEPOT))])
    clock.advance(days=6, hours=23)
    assert matcher.evict_expired() == 0
    assert len(matcher.stories) == 2


def test_a_story_joined_again_inside_the_window_is_kept(
        clock: FakeClock, make_prepared: Callable[..., PreparedArticle]) -> None:
    matcher = Matcher(FP, MatchConfig(), retention=timedelta(days=7), clock=clock)
    feed(matcher, [make_prepared("ferry", body(FERRY)), make_prepared("depot", body(DEPOT))])
    clock.advance(days=5)
    feed(matcher, [make_prepared("ferry-follow-up", body(light_edits(FERRY)), hours=24 * 5)])  # touches ferry
    clock.advance(days=5)
    assert matcher.evict_expired() == 1  # only the depot story
    assert {story.canonical_key for story in matcher.stories.values()} == {
        make_prepared("ferry", body(FERRY)).key}


def test_replaying_old_news_does_not_evict_it(clock: FakeClock, make_prepared: Callable[..., PreparedArticle]) -> None:
    # published_at two years before the clock: retention counts processing time, so the stories stay.
    matcher = Matcher(FP, MatchConfig(), retention=timedelta(days=30), clock=clock)
    feed(matcher, [make_prepared("ferry", body(FERRY)), make_prepared("depot", body(DEPOT), hours=24 * 60)])
    assert clock.now - T0 > timedelta(days=700)
    assert matcher.evict_expired() == 0
    assert len(matcher.articles) == 2


def unrelated(article: PreparedArticle, i: int) -> PreparedArticle:
    """A distinct article sharing nothing with ``article``: every value XORed with one mask (as bench's Deriver)."""
    mask = np.uint32(0x9E3779B1 * (i + 1) & 0xFFFFFFFF)
    return dataclasses.replace(article, key=f"{article.key}-{i}", content_hash=f"{i:064x}",
                               signature=article.signature ^ mask,
                               shingle_hashes=np.sort(article.shingle_hashes ^ mask))


def test_article_state_survives_the_index_compacting_after_an_eviction(
        clock: FakeClock, corpus: dict[str, PreparedArticle]) -> None:
    matcher = Matcher(FP, MatchConfig(), preferred_sources=("BaylineWire.example",), retention=timedelta(days=7),
                      clock=clock)
    feed(matcher, [unrelated(corpus["turtles"], i) for i in range(1200)])
    clock.advance(days=8)
    feed(matcher, list(corpus.values()))
    before = {key: matcher.articles[key] for key in (a.key for a in corpus.values())}
    assert matcher.evict_expired() == 1200  # at 1,000 dead ordinals of 1,207 the index compacts
    assert len(matcher.columns.story) == 207  # and the columns with it: 7 held, 200 removed since
    assert {key: matcher.articles[key] for key in before} == before
    # Content and hashes are found under the new ordinals: an exact copy and a near copy still join.
    copy = dataclasses.replace(corpus["depot-original"], key="depot-again")
    assert matcher.process(copy, LINEAGE).story_id == before[corpus["depot-original"].key].story_id
    near = dataclasses.replace(corpus["ferry-chrome"], key="ferry-again", content_hash="f" * 64)
    decision = matcher.process(near, LINEAGE)
    assert (decision.outcome, decision.story_id) == (NEAR, before[corpus["ferry-wire"].key].story_id)


def test_article_columns_keep_renumbers_and_round_trips_times() -> None:
    columns = ArticleColumns()
    plus_two = timezone(timedelta(hours=2))
    for i in range(5):
        published = datetime(2026, 3, 1, 9, 30, 15, 123_457 + i, tzinfo=plus_two)
        columns.append(i, Contender(f"k{i}", published, f"outlet{i}", 100 + i), content_key(str(i)),
                       (CANONICAL, EXACT, NEAR)[i % 3])
        columns.set_similarity(i, Similarity(i / 10, i / 5))
    columns.keep(np.array([1, 3, 4]))
    assert len(columns.story) == 3
    assert columns.contender(1, "k3") == Contender(
        "k3", datetime(2026, 3, 1, 9, 30, 15, 123_460, tzinfo=plus_two), "outlet3", 103)
    assert columns.similarity(2) == Similarity(0.4, 0.8)
    assert columns.method.tolist()[:3] == [1, 0, 1]  # EXACT, CANONICAL, EXACT (codes in METHODS)
    assert int(columns.content[0]) == content_key("1")


def test_content_key_tells_apart_hashes_that_differ_at_either_end() -> None:
    base = "ab" * 32
    keys = {content_key(base), content_key("0" + base[1:]), content_key(base[:-1] + "0"), content_key(base)}
    assert len(keys) == 3
    assert all(0 <= key < 2**60 for key in keys)


# -- state and configuration ---------------------------------------------------------------------

def test_load_rebuilds_a_matcher_that_continues_the_same_stories(
        matcher: Matcher, corpus: dict[str, PreparedArticle]) -> None:
    feed(matcher, [corpus["ferry-wire"], corpus["ferry-trimmed"], corpus["depot-original"]])
    stories = [dataclasses.replace(s, members=[], outlets=Counter()) for s in matcher.stories.values()]
    articles = [stored(matcher, corpus[name]) for name in ("ferry-wire", "ferry-trimmed", "depot-original")]
    rebuilt = Matcher(FP, MatchConfig())
    rebuilt.load(stories, articles)
    assert {sid: sorted(s.members) for sid, s in rebuilt.stories.items()} == {
        sid: sorted(s.members) for sid, s in matcher.stories.items()}
    assert rebuilt.process(corpus["ferry-wire"], LINEAGE).outcome == DUPLICATE
    decision = rebuilt.process(corpus["ferry-chrome"], LINEAGE)
    assert (decision.outcome, decision.story_id) == (NEAR, story_of(matcher, corpus["ferry-wire"]).id)
    assert rebuilt.process(corpus["depot-chrome"], LINEAGE).outcome == EXACT


def test_load_skips_articles_of_stories_it_was_not_given(matcher: Matcher,
                                                         corpus: dict[str, PreparedArticle]) -> None:
    feed(matcher, [corpus["ferry-wire"], corpus["depot-original"]])
    ferry = story_of(matcher, corpus["ferry-wire"])
    rebuilt = Matcher(FP, MatchConfig())
    rebuilt.load([dataclasses.replace(ferry, members=[])],
                 [stored(matcher, corpus[name]) for name in ("ferry-wire", "depot-original")])
    assert set(rebuilt.articles) == {corpus["ferry-wire"].key}


def test_signatures_from_other_fingerprint_settings_are_refused(
        matcher: Matcher, make_article: Callable[..., Article]) -> None:
    other = prepare_article(make_article("x", body(DEPOT)), FingerprintConfig(seed=2))
    with pytest.raises(ValueError, match=r"signature made with 'mh1-.*-s2-.*'.*same fingerprint settings"):
        matcher.process(other, LINEAGE)
    assert not matcher.articles


def test_matcher_checks_its_match_config() -> None:
    with pytest.raises(ValueError, match="num_bands \\* rows_per_band = 160 exceeds num_perm = 128"):
        Matcher(FP, MatchConfig(num_bands=20, rows_per_band=8))
