"""ingest.contract: every reject reason, and the round trip of a valid article."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.contract import (
    EMPTY_TEXT,
    INVALID_UTF8,
    INVALID_VALUE,
    MALFORMED_JSON,
    MISSING_FIELD,
    NOT_AN_OBJECT,
    REJECT_REASONS,
    TOO_LARGE,
    UNSUPPORTED_VERSION,
    WRONG_TYPE,
    Article,
    InvalidArticle,
    article_from_dict,
    article_to_dict,
    parse_article,
    parse_time,
)

_DROP = object()  # marks a field to leave out


def valid(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": "tc-001",
        "url": "https://tidewater-courier.example/news/ferry-cracks",
        "source": "tidewater-courier.example",
        "title": "Ferry sailings halted after hull cracks found",
        "body": "The operator suspended all sailings on Tuesday.\n\nIsland residents reacted with frustration.",
        "published_at": "2024-07-02T08:00:00Z",
        "scraped_at": "2024-07-02T08:05:30+02:00",
        "lang": "EN",
        "metadata": {"section": "world", "tags": ["ferries", "transport"]},
    }
    obj.update(changes)
    return {k: v for k, v in obj.items() if v is not _DROP}



def encoded(obj: Any) -> bytes:
    return json.dumps(obj).encode("utf-8")


def rejection(raw: bytes, reason: str, **kwargs: Any) -> InvalidArticle:
    """Parse raw, expecting InvalidArticle for reason (a regex alternation is allowed)."""
    with pytest.raises(InvalidArticle, match=rf"^(?:{reason}): ") as info:
        parse_article(raw, **kwargs)
    assert re.fullmatch(reason, info.value.reason)
    return info.value


def test_valid_article_is_parsed_with_types_converted() -> None:
    article = parse_article(encoded(valid()))
    assert article.id == "tc-001"
    assert article.published_at == datetime(2024, 7, 2, 8, 0, tzinfo=UTC)
    assert article.scraped_at == datetime(2024, 7, 2, 6, 5, 30, tzinfo=UTC)  # converted to UTC
    assert article.lang == "en"
    assert article.schema_version == 1
    assert article.metadata == {"section": "world", "tags": ["ferries", "transport"]}


def test_valid_article_round_trips_through_dict() -> None:
    article = article_from_dict(valid())
    again = article_from_dict(json.loads(json.dumps(article_to_dict(article))))
    assert again == article


def test_round_trip_keeps_html_and_omits_absent_optionals() -> None:
    article = article_from_dict(valid(body=_DROP, html="<p>Sailings suspended.</p>", scraped_at=_DROP, metadata=_DROP))
    as_dict = article_to_dict(article)
    assert "body" not in as_dict and "scraped_at" not in as_dict and "metadata" not in as_dict
    assert article_from_dict(as_dict) == article


def test_every_reason_is_distinct_and_listed() -> None:
    assert len(set(REJECT_REASONS)) == len(REJECT_REASONS) == 9


def test_too_large() -> None:
    raw = encoded(valid())
    error = rejection(raw, TOO_LARGE, max_bytes=len(raw) - 1)
    assert str(len(raw)) in error.detail


def test_exactly_at_the_limit_is_accepted() -> None:
    raw = encoded(valid())
    assert parse_article(raw, max_bytes=len(raw)).id == "tc-001"


def test_invalid_utf8() -> None:
    raw = encoded(valid()).replace(b"Tuesday", b"Tu\xffsday")
    error = rejection(raw, INVALID_UTF8)
    assert "not valid UTF-8" in error.detail


@pytest.mark.parametrize("raw", [
    b'{"id": "a", ',
    b"not json at all",
    b'{"id": "a" "url": "b"}',
], ids=["truncated", "text", "missing-comma"])
def test_malformed_json(raw: bytes) -> None:
    rejection(raw, MALFORMED_JSON)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_constants_are_malformed_json(constant: str) -> None:
    raw = encoded(valid(metadata={"score": 0})).replace(b'"score": 0', f'"score": {constant}'.encode())
    error = rejection(raw, MALFORMED_JSON)
    assert constant in error.detail


def test_deep_nesting_is_malformed_json() -> None:
    raw = b"[" * 200_000 + b"]" * 200_000
    error = rejection(raw, MALFORMED_JSON)
    assert "nested too deeply" in error.detail


def test_metadata_nested_beyond_the_limit_is_invalid_value() -> None:
    nested: dict[str, Any] = {}
    for _ in range(12):
        nested = {"x": nested}
    error = rejection(encoded(valid(metadata=nested)), INVALID_VALUE)
    assert "nested deeper" in error.detail


@pytest.mark.parametrize("value", [[1, 2], "a string", 42, None])
def test_not_an_object(value: Any) -> None:
    error = rejection(encoded(value), NOT_AN_OBJECT)
    assert "expected a JSON object" in error.detail


@pytest.mark.parametrize("name", ["id", "url", "source", "published_at"])
def test_missing_required_field(name: str) -> None:
    error = rejection(encoded(valid(**{name: _DROP})), MISSING_FIELD)
    assert f"'{name}'" in error.detail


def test_missing_both_body_and_html() -> None:
    error = rejection(encoded(valid(body=_DROP)), MISSING_FIELD)
    assert "'body' or 'html'" in error.detail


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("id", 17, "integer"),
    ("title", ["a"], "array"),
    ("body", {"text": "x"}, "object"),
    ("lang", True, "boolean"),
    ("published_at", 1719907200, "integer"),
    ("metadata", "section=world", "string"),
    ("schema_version", "1", "string"),
    ("schema_version", 1.0, "number"),
    ("schema_version", True, "boolean"),
])
def test_wrong_type(name: str, value: Any, expected: str) -> None:
    error = rejection(encoded(valid(**{name: value})), WRONG_TYPE)
    assert name in error.detail and expected in error.detail


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"url": "ftp://example.com/a"}, "absolute http(s) URL"),
    ({"url": "/news/ferry"}, "absolute http(s) URL"),
    ({"id": "   "}, "must not be empty"),
    ({"id": "x" * 257}, "the limit is 256"),
    ({"published_at": "yesterday"}, "not an ISO 8601 time"),
    ({"published_at": "2024-07-02T08:00:00"}, "no zone"),
    ({"scraped_at": "02/07/2024"}, "not an ISO 8601 time"),
], ids=["ftp-url", "relative-url", "blank-id", "long-id", "prose-date", "naive-date", "scraped-at"])
def test_invalid_value(changes: dict[str, Any], fragment: str) -> None:
    error = rejection(encoded(valid(**changes)), INVALID_VALUE)
    assert fragment in error.detail


@pytest.mark.parametrize("published_at", [
    "0001-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",  # epoch-zero default
    "1989-12-31T23:59:59Z",
    "2100-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
])
def test_absurd_dates_are_invalid_value(published_at: str) -> None:
    error = rejection(encoded(valid(published_at=published_at)), INVALID_VALUE)
    assert "outside 1990..2100" in error.detail


@pytest.mark.parametrize("published_at", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_absurd_dates_with_an_offset_are_invalid_value_not_a_crash(published_at: str) -> None:
    # BUG: parse_time converts to UTC with astimezone(), which raises OverflowError (not a
    # ValueError) at the ends of the datetime range; _checked_time only catches ValueError, so
    # parse_article raises OverflowError, breaking "validation never raises anything but InvalidArticle".
    rejection(encoded(valid(published_at=published_at)), INVALID_VALUE)


def test_lone_surrogate_escape_is_rejected() -> None:
    # BUG: "\ud800" is a legal JSON escape but no Unicode character; json.loads returns a str
    # that cannot be encoded to UTF-8, so the article passes validation and prepare_article
    # later crashes with UnicodeEncodeError (content_hash / article_key encode the text).
    raw = encoded(valid()).replace(b"Tuesday", b"Tues\\ud800day")
    rejection(raw, f"{INVALID_UTF8}|{INVALID_VALUE}")


def test_overflowing_number_in_metadata_is_rejected() -> None:
    # BUG: 1e400 parses to float('inf') without going through parse_constant, so an infinity
    # the contract means to refuse reaches the store (PostgreSQL's JSON types reject it).
    raw = encoded(valid(metadata={"score": 0})).replace(b'"score": 0', b'"score": 1e400')
    rejection(raw, f"{MALFORMED_JSON}|{INVALID_VALUE}")


def test_dates_at_the_window_edges_are_accepted() -> None:
    assert parse_article(encoded(valid(published_at="1990-01-01T00:00:00Z"))).published_at.year == 1990
    assert parse_article(encoded(valid(published_at="2099-12-31T23:59:59Z"))).published_at.year == 2099


@pytest.mark.parametrize("version", [0, 2, 99])
def test_unsupported_version(version: int) -> None:
    error = rejection(encoded(valid(schema_version=version)), UNSUPPORTED_VERSION)
    assert f"schema_version {version}" in error.detail


@pytest.mark.parametrize("changes", [
    {"body": "   \n\n  "},
    {"body": "", "html": " "},
    {"body": _DROP, "html": ""},
], ids=["blank-body", "blank-both", "empty-html"])
def test_empty_text(changes: dict[str, Any]) -> None:
    error = rejection(encoded(valid(**changes)), EMPTY_TEXT)
    assert "both empty" in error.detail


def test_one_sample_per_reason_covers_the_reason_set() -> None:
    samples = {
        INVALID_UTF8: b"\xff", NOT_AN_OBJECT: b"[]", MALFORMED_JSON: b"{", MISSING_FIELD: encoded(valid(id=_DROP)),
        WRONG_TYPE: encoded(valid(id=3)), INVALID_VALUE: encoded(valid(url="x")),
        UNSUPPORTED_VERSION: encoded(valid(schema_version=2)), EMPTY_TEXT: encoded(valid(body="")),
    }
    for reason, raw in samples.items():
        error = rejection(raw, reason)
        assert isinstance(error, ValueError)  # callers may catch ValueError
    assert set(samples) | {TOO_LARGE} == set(REJECT_REASONS)


def test_parse_time_requires_a_zone_and_returns_utc() -> None:
    assert parse_time("2024-07-02T10:00:00+02:00") == datetime(2024, 7, 2, 8, 0, tzinfo=UTC)
    assert parse_time("2024-07-02t08:00:00z").tzinfo == UTC
    with pytest.raises(ValueError, match="no zone"):
        parse_time("2024-07-02T08:00:00")


def test_article_defaults() -> None:
    article = article_from_dict(valid(lang=_DROP, title=_DROP, metadata=_DROP, scraped_at=_DROP))
    assert (article.lang, article.title, article.metadata, article.scraped_at) == ("und", "", {}, None)
    assert isinstance(article, Article)
