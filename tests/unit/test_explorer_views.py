"""consumers/explorer/views.py: what a search means, which URLs and ids are accepted, where events sit in time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consumers.explorer.views import (
    EMPTY,
    URL,
    WORDS,
    InvalidInput,
    check_id,
    lookup_url,
    read_search,
    timeline_marks,
)
from tests.unit.explorer_articles import Ev


def test_a_lookup_url_is_normalised_as_ingest_does() -> None:
    assert lookup_url(" HTTPS://News.Example.com:443/a/b?utm_source=x&id=7#top ") == "https://news.example.com/a/b?id=7"


@pytest.mark.parametrize(("url", "message"), [
    ("javascript:alert(1)", "http:// or https://"),
    ("mailto:x@example.com", "http:// or https://"),
    ("https://", "http:// or https://"),
    ("example.com/a", "http:// or https://"),
    ("https://a.example:port/x", "malformed host or port"),
    ("https://a.example/a b", "spaces or control characters"),
    ("https://a.example/\x00", "spaces or control characters"),
    ("https://a.example/" + "a" * 3000, "at most 2048"),
])
def test_odd_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        lookup_url(url)


def test_a_search_is_a_url_or_title_words() -> None:
    assert read_search("https://a.example/x?fbclid=1") == read_search("https://a.example/x")
    assert read_search("https://a.example/x").kind == URL
    assert read_search("  Ferry   strike ").words == ("Ferry", "strike")
    assert read_search("  Ferry strike").kind == WORDS
    assert read_search("   ").kind == EMPTY
    assert read_search("<script>alert(1)</script>").kind == WORDS  # words are only ever compared, never run
    with pytest.raises(InvalidInput, match="at most 8"):
        read_search("a b c d e f g h i")


@pytest.mark.parametrize("value", ["", "a" * 41, "../x", "a b", "<script>", "s-é"])
def test_malformed_ids_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match="must be 1 to 40 letters"):
        check_id(value, "article_id")


def test_marks_sit_at_the_publication_of_the_article_that_caused_them() -> None:
    t0 = datetime(2024, 10, 2, 7, 45, tzinfo=UTC)
    published = {"a": t0 + timedelta(hours=2), "b": t0, "r": t0 + timedelta(days=3)}
    events = [Ev(1, "s", "founded", "a", "founded"), Ev(2, "s", "joined", "b", "near match with a", 0.9),
              Ev(3, "s", "canonical_changed", "b", "earlier_published"), Ev(4, "s", "merged", None, "absorbed s-y"),
              Ev(5, "s-y", "merged", None, "merged into s"), Ev(6, "s", "joined", "r", "near match with a", 0.7),
              Ev(7, "s", "canonical_changed", "gone", "earlier_published")]
    marks = timeline_marks(events, published, {"b": "apnews.com"})
    assert [(m.kind, m.at, m.label) for m in marks] == [
        ("canonical_changed", t0, "now apnews.com"),
        ("merged", t0 + timedelta(days=3), "absorbed s-y"),
        ("canonical_changed", None, "now another copy"),
    ]
