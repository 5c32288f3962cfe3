"""consumers.prepare: the prepare chain and the articles.fingerprinted wire format."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pytest

from consumers.prepare import (
    WIRE_VERSION,
    Lineage,
    PreparedArticle,
    article_key,
    decode_prepared,
    encode_prepared,
    prepare_article,
    refingerprint,
)
from consumers.stages.fingerprint import FingerprintConfig
from consumers.stages.match import compare
from ingest.contract import EMPTY_TEXT, Article, InvalidArticle
from tests.unit.invented_news import DEPOT, FERRY, body, with_chrome


def assert_same_prepared(a: PreparedArticle, b: PreparedArticle) -> None:
    for f in dataclasses.fields(PreparedArticle):
        left, right = getattr(a, f.name), getattr(b, f.name)
        if isinstance(left, np.ndarray):
            assert left.dtype == right.dtype and np.array_equal(left, right), f.name
        else:
            assert left == right, f.name


def test_prepare_cleans_and_fingerprints(make_prepared: Callable[..., PreparedArticle],
                                         fingerprint_config: FingerprintConfig) -> None:
    prepared = make_prepared("tc-1", with_chrome(FERRY), url="https://Tidewater.example/ferry?utm_source=rss#top")
    assert prepared.text == body(FERRY)
    assert prepared.url == "https://Tidewater.example/ferry?utm_source=rss#top"  # as sent
    assert prepared.url_normalised == "https://tidewater.example/ferry"
    assert prepared.key == article_key(prepared.url_normalised, prepared.content_hash)
    assert prepared.signature.shape == (fingerprint_config.num_perm,)
    assert prepared.fingerprint_identity == fingerprint_config.identity
    assert prepared.input_id == "tc-1"


def test_chrome_does_not_change_the_content_hash(make_prepared: Callable[..., PreparedArticle]) -> None:
    plain = make_prepared("a", body(FERRY))
    decorated = make_prepared("b", with_chrome(FERRY))
    assert plain.content_hash == decorated.content_hash
    assert plain.key != decorated.key  # different URLs


def test_key_ignores_tracking_parameters(make_prepared: Callable[..., PreparedArticle]) -> None:
    a = make_prepared("a", body(DEPOT), url="https://northfield.example/depot?utm_medium=social")
    b = make_prepared("b", body(DEPOT), url="https://NORTHFIELD.example/depot#comments")
    assert a.key == b.key


def test_key_changes_with_content_at_the_same_url(make_prepared: Callable[..., PreparedArticle]) -> None:
    first = make_prepared("a", body(DEPOT[:3]), url="https://northfield.example/depot")
    updated = make_prepared("a", body(DEPOT), url="https://northfield.example/depot")
    assert first.key != updated.key


def test_prepare_from_html(make_article: Callable[..., Article], fingerprint_config: FingerprintConfig) -> None:
    html = ("<html><body><nav><a href='/'>Home</a> | <a href='/world'>World</a></nav><article>"
            "<h1>Ferry sailings halted</h1>" + "".join(f"<p>{p}</p>" for p in FERRY) +
            "</article><footer>© 2024 Tidewater Courier</footer></body></html>")
    from_html = prepare_article(dataclasses.replace(make_article("h", ""), body=None, html=html), fingerprint_config)
    from_body = prepare_article(make_article("b", body(FERRY)), fingerprint_config)
    assert FERRY[2] in from_html.text.split("\n\n")
    similarity = compare(from_html.shingle_hashes, from_body.shingle_hashes)
    assert similarity.jaccard > 0.9


def test_text_that_is_only_chrome_is_rejected(make_article: Callable[..., Article],
                                              fingerprint_config: FingerprintConfig) -> None:
    article = make_article("x", "Advertisement\n\nShare this article\n\n© 2024 Tidewater Courier")
    with pytest.raises(InvalidArticle, match="no article text left") as info:
        prepare_article(article, fingerprint_config)
    assert info.value.reason == EMPTY_TEXT


def test_html_without_article_text_is_rejected(make_article: Callable[..., Article],
                                               fingerprint_config: FingerprintConfig) -> None:
    article = dataclasses.replace(make_article("x", ""), body=None, html="<html><body></body></html>")
    with pytest.raises(InvalidArticle, match=r"^empty_text: ") as info:
        prepare_article(article, fingerprint_config)
    assert info.value.reason == EMPTY_TEXT


# -- the wire format -----------------------------------------------------------------------------

@pytest.mark.parametrize("lineage", [
    Lineage("articles.raw", 3, 1_234_567, 1_719_907_200_123),
    Lineage("file:articles.jsonl", 0, 0, None),
])
def test_encode_decode_round_trip(make_prepared: Callable[..., PreparedArticle], lineage: Lineage) -> None:
    prepared = dataclasses.replace(
        make_prepared("tc-1", with_chrome(FERRY)),
        scraped_at=datetime(2024, 7, 2, 9, 30, 15, tzinfo=UTC),
        title="Ferry sailings halted \u2014 \u201cnot safe\u201d",
        metadata={"section": "world", "tags": ["ferries"], "rank": 2},
    )
    again, lineage_again = decode_prepared(encode_prepared(prepared, lineage))
    assert_same_prepared(again, prepared)
    assert lineage_again == lineage


def test_round_trip_without_scraped_at_or_metadata(make_prepared: Callable[..., PreparedArticle]) -> None:
    prepared = make_prepared("d-1", body(DEPOT))
    assert prepared.scraped_at is None and prepared.metadata == {}
    again, _ = decode_prepared(encode_prepared(prepared, Lineage("t", 0, 5)))
    assert_same_prepared(again, prepared)


def test_wire_record_is_utf8_json_with_a_base64_signature(make_prepared: Callable[..., PreparedArticle]) -> None:
    prepared = make_prepared("d-1", "Caf\u00e9 owners in Brennock welcomed the vote on the depot.")
    raw = encode_prepared(prepared, Lineage("articles.raw", 1, 2, None))
    obj = json.loads(raw.decode("utf-8"))
    assert obj["wire_version"] == WIRE_VERSION
    assert "Caf\u00e9" in obj["text"]  # not \u-escaped
    assert len(base64.b64decode(obj["signature"])) == 4 * prepared.signature.size
    assert obj["published_at"].endswith("Z")
    assert obj["lineage"] == ["articles.raw", 1, 2, None]


@pytest.mark.parametrize("version", [None, 0, 1, 3, "2"])
def test_decode_refuses_other_wire_versions(make_prepared: Callable[..., PreparedArticle],
                                            version: object) -> None:
    obj = json.loads(encode_prepared(make_prepared("d-1", body(DEPOT)), Lineage("t", 0, 0)))
    obj["wire_version"] = version
    with pytest.raises(ValueError, match=rf"wire_version {version!r} is not {WIRE_VERSION}"):
        decode_prepared(json.dumps(obj).encode())


def test_decode_of_a_truncated_record_raises(make_prepared: Callable[..., PreparedArticle]) -> None:
    raw = encode_prepared(make_prepared("d-1", body(DEPOT)), Lineage("t", 0, 0))
    with pytest.raises(ValueError, match=r"Unterminated string|Expecting"):
        decode_prepared(raw[: len(raw) // 2])


def test_refingerprint_remakes_a_record_of_another_identity_as_prepare_would(
        make_article: Callable[..., Article]) -> None:
    """What the match role does with a record an older or differently configured prepare made."""
    article = make_article("rf-1", with_chrome(FERRY))
    old_config, config = FingerprintConfig(seed=7, num_perm=64), FingerprintConfig()
    old = prepare_article(article, old_config)
    assert old.fingerprint_identity != config.identity
    assert_same_prepared(refingerprint(old, config), prepare_article(article, config))
    current = prepare_article(article, config)
    assert refingerprint(current, config) is current


def test_refingerprint_refuses_a_text_that_normalises_to_other_content(
        make_article: Callable[..., Article]) -> None:
    old = prepare_article(make_article("rf-2", body(DEPOT)), FingerprintConfig(seed=7))
    changed = dataclasses.replace(old, text=old.text + " One more sentence.")  # as if normalisation had changed
    with pytest.raises(ValueError, match="its key would change"):
        refingerprint(changed, FingerprintConfig())
