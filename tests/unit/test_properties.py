"""Property-based tests (hypothesis) of the pure stages at the edges of the system.

- the message contract (ingest.contract.parse_article): any bytes give an Article or an
  InvalidArticle with a listed reason, never another exception; valid articles round-trip;
- the URL normaliser (ingest.urls.normalise_url): idempotent, total on http(s) URLs, strips
  tracking parameters, lower-case scheme and host;
- the text normaliser (consumers.stages.normalise): total, idempotent, no zero-width characters,
  single spaces, casefolded; clean_text only removes text;
- the shingler and fingerprint (consumers.stages.fingerprint): total, deterministic, sorted
  unique uint32 hashes, shingles of the configured size;
- and the Kafka security settings passing through to kafka-python (consumers.kafka_io.client_config).

Properties that found a bug keep their failing example (``@example``) and are marked
``xfail(strict=True)``, so they turn into failures the day the bug is fixed and the mark can go.
"""

from __future__ import annotations

import json
import os
import re
import string
import tempfile
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from consumers.kafka_io import client_config
from consumers.settings import env_name, load_settings
from consumers.stages.fingerprint import FingerprintConfig, fingerprint, plain_shingle_hashes, shingles, tokenise
from consumers.stages.normalise import clean_text, normalise_text
from ingest.contract import (
    EARLIEST_DATE,
    LATEST_DATE,
    MAX_FIELD_CHARS,
    REJECT_REASONS,
    Article,
    InvalidArticle,
    article_to_dict,
    parse_article,
)
from ingest.urls import TRACKING_PARAMS, TRACKING_PREFIXES, normalise_url

# Hypothesis keeps caches (and, for failing properties, patches) in ./.hypothesis: keep them out of the
# work tree, and keep no example database, so runs stay independent of each other.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "newsdedup-hypothesis")
PROPERTY = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FAST = settings(PROPERTY, max_examples=100)

ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"  # what normalise_text promises to fold away
CONTROL = "".join(map(chr, [*range(0x00, 0x20), *range(0x7f, 0xa0)]))

# -------------------------------------------------------------------------------------------------
# The message contract
# -------------------------------------------------------------------------------------------------

FIELDS = ("schema_version", "id", "url", "source", "title", "body", "html", "published_at", "scraped_at",
          "lang", "metadata")


def outcome(raw: bytes) -> Article | InvalidArticle:
    """parse_article's answer; any exception but InvalidArticle propagates and fails the property."""
    try:
        return parse_article(raw)
    except InvalidArticle as exc:
        return exc


def check_contract(raw: bytes) -> Article | InvalidArticle:
    result = outcome(raw)
    if isinstance(result, InvalidArticle):
        assert result.reason in REJECT_REASONS, result
        assert str(result).startswith(f"{result.reason}: ")
    else:
        check_article(result)
    return result


def check_article(article: Article) -> None:
    """What every accepted article guarantees to the stages after it."""
    assert isinstance(article, Article)
    for name in ("id", "url", "source"):
        value = getattr(article, name)
        assert isinstance(value, str) and value.strip(), name
    assert article.url.lower().startswith(("http://", "https://"))
    assert isinstance(article.title, str)
    assert (article.body or "").strip() or (article.html or "").strip()
    assert article.published_at.tzinfo is not None and article.published_at.utcoffset() == timedelta(0)
    assert EARLIEST_DATE <= article.published_at < LATEST_DATE
    assert isinstance(article.metadata, dict)
    for name, limit in MAX_FIELD_CHARS.items():
        if name != "lang":  # lang is lower-cased after the check (see the round-trip property)
            assert len(getattr(article, name)) <= limit, name


def as_bytes(obj: Any, ensure_ascii: bool) -> bytes:
    # surrogatepass: a lone surrogate written raw becomes bytes that are not UTF-8 (an invalid_utf8
    # case); written as an escape (ensure_ascii) it is valid JSON that names no character.
    return json.dumps(obj, ensure_ascii=ensure_ascii, allow_nan=True).encode("utf-8", "surrogatepass")


any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=30)  # surrogates included
json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10 ** 400), max_value=10 ** 400)
                | st.floats(allow_nan=True, allow_infinity=True) | any_text)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(any_text, inner, max_size=4), max_leaves=12)

zones = st.one_of(st.just("Z"), st.just("z"), st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda m: f"{'+' if m >= 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}"))
iso_times = st.builds(
    lambda moment, zone: moment.isoformat() + zone,
    st.datetimes(min_value=datetime(1989, 12, 30), max_value=datetime(2100, 1, 2)), zones,
)
time_values = iso_times | st.sampled_from(["", " ", "2024-07-02", "2024-07-02T08:00:00", "0001-01-01T00:00:00+01:00",
                                           "9999-12-31T23:59:59-01:00", "yesterday"]) | any_text
plausible = {  # values near the contract's edges, beside the arbitrary json_values
    "schema_version": st.sampled_from([1, 0, 2, -1, True, 1.0, "1"]),
    "id": st.text(max_size=3) | st.text(min_size=255, max_size=257),
    "url": st.sampled_from(["https://a.example/x", "HTTP://A.example", "ftp://a.example/", "https://", " "])
    | st.text().map(lambda t: "https://" + t),
    "source": st.text(max_size=5),
    "title": st.text(max_size=5),
    "body": st.text(max_size=40),
    "html": st.text(max_size=40).map(lambda t: f"<p>{t}</p>") | st.just(""),
    "published_at": time_values,
    "scraped_at": time_values,
    "lang": st.text(max_size=17),
    "metadata": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
}


@st.composite
def json_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Objects shaped like articles: each field absent, plausible, or of a random JSON type, plus extra keys."""
    obj: dict[str, Any] = {}
    for name in FIELDS:
        choice = draw(st.sampled_from(["absent", "plausible", "plausible", "random"]))
        if choice == "plausible":
            obj[name] = draw(plausible[name])
        elif choice == "random":
            obj[name] = draw(json_values)
    obj.update(draw(st.dictionaries(any_text, json_values, max_size=2)))
    return obj


@PROPERTY
@given(st.binary(max_size=2000))
def test_any_bytes_give_an_article_or_a_listed_reason(raw: bytes) -> None:
    check_contract(raw)


@PROPERTY
@given(json_objects(), st.booleans())
def test_any_json_object_gives_an_article_or_a_listed_reason(obj: dict[str, Any], ensure_ascii: bool) -> None:
    check_contract(as_bytes(obj, ensure_ascii))


@PROPERTY
@given(json_values | json_objects(), st.booleans(), st.data())
def test_damaged_json_gives_an_article_or_a_listed_reason(value: Any, ensure_ascii: bool, data: st.DataObject) -> None:
    raw = as_bytes(value, ensure_ascii)
    cut = data.draw(st.integers(0, len(raw)), label="cut")
    junk = data.draw(st.binary(max_size=4), label="junk")
    check_contract(raw[:cut] + junk + raw[cut + len(junk):])


VALID_BASE = {"id": "p-1", "url": "https://a.example/x", "source": "a.example", "body": "Some text.",
              "published_at": "2024-07-02T08:00:00Z"}


@FAST
@given(st.integers(0, 2500), st.sampled_from(["list", "object"]))
@example(depth=500, container="object")
def test_metadata_nested_to_any_depth_gives_an_article_or_a_listed_reason(depth: int, container: str) -> None:
    opening, closing = (b"[", b"]") if container == "list" else (b'{"k":', b"}")
    nested = opening * depth + b"0" + closing * depth
    raw = json.dumps(VALID_BASE).encode()[:-1] + b', "metadata": {"deep": ' + nested + b"}}"
    result = check_contract(raw)
    if depth >= 8:  # metadata itself is one level: anything this deep breaks MAX_JSON_DEPTH
        assert isinstance(result, InvalidArticle)


def json_text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size)  # no surrogates: valid JSON strings


json_leaves = (st.none() | st.booleans() | st.integers(-(10 ** 30), 10 ** 30)
               | st.floats(allow_nan=False, allow_infinity=False) | json_text(8))
metadata_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=3)
                               | st.dictionaries(json_text(5), inner, max_size=3), max_leaves=8)


def nonblank(max_size: int) -> st.SearchStrategy[str]:
    return st.text(min_size=1, max_size=max_size).filter(lambda s: s.strip())


@st.composite
def valid_articles(draw: st.DrawFn) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": draw(nonblank(MAX_FIELD_CHARS["id"])),
        "url": draw(st.sampled_from(["http://", "https://", "HTTPS://"]))
        + draw(st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,10}){0,3}", fullmatch=True))
        + draw(st.just("") | st.text(max_size=40).map(lambda path: "/" + path)),
        "source": draw(nonblank(40)),
        "published_at": draw(valid_times),
    }
    text = draw(nonblank(200))
    where = draw(st.sampled_from(["body", "html", "both"]))
    if where in ("body", "both"):
        obj["body"] = text
    if where in ("html", "both"):
        obj["html"] = f"<html><body><p>{text}</p></body></html>"
    optional = {
        "schema_version": st.just(1),
        "title": st.text(max_size=80),
        "scraped_at": valid_times | st.just(""),
        "lang": st.text(max_size=MAX_FIELD_CHARS["lang"]),
        "metadata": st.dictionaries(json_text(8), metadata_values, max_size=4),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            obj[name] = draw(strategy)
    return obj


valid_times = st.builds(
    lambda moment, zone: moment.replace(tzinfo=UTC).astimezone(zone).isoformat().replace("+00:00", "Z"),
    st.datetimes(min_value=datetime(1990, 1, 2), max_value=datetime(2099, 12, 30)),
    st.integers(-18 * 60 + 1, 18 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m))),
)


@PROPERTY
@given(valid_articles(), st.booleans())
def test_valid_articles_round_trip_through_dict_and_json(obj: dict[str, Any], ensure_ascii: bool) -> None:
    # Some letters grow when lower-cased ("İ" becomes two): such a lang is over the limit, and refused.
    assume(len((obj.get("lang") or "und").lower()) <= MAX_FIELD_CHARS["lang"])
    assume("\\u0000" not in json.dumps(obj))  # NUL is refused (PostgreSQL text cannot hold it)
    article = parse_article(json.dumps(obj, ensure_ascii=ensure_ascii).encode("utf-8"))
    check_article(article)
    as_dict = article_to_dict(article)
    again = parse_article(json.dumps(as_dict, ensure_ascii=ensure_ascii).encode("utf-8"))
    assert again == article
    assert article_to_dict(again) == as_dict
    assert again.published_at == datetime.fromisoformat(obj["published_at"].replace("Z", "+00:00"))


def test_a_lang_that_grows_past_the_limit_when_lower_cased_is_refused() -> None:
    raw = json.dumps({**VALID_BASE, "lang": "İ" * 9}, ensure_ascii=False).encode("utf-8")
    with pytest.raises(InvalidArticle, match=r"field 'lang' is 18 characters, the limit is 16"):
        parse_article(raw)


# -------------------------------------------------------------------------------------------------
# URL normalisation
# -------------------------------------------------------------------------------------------------

HEX = "0123456789abcdefABCDEF"
HOST_CHARS = string.ascii_letters + string.digits + "-" + "äöüßéñøİıσςДдЖж中文"
# IDNA separates labels with the full stop and its ideographic, full-width and half-width forms.
LABEL_SEPARATORS = [".", ".", ".", "\u3002", "\uff0e", "\uff61"]

labels = st.text(alphabet=HOST_CHARS, min_size=1, max_size=12)


def _join_labels(parts: list[str], separators: list[str], trailing: str) -> str:
    out = parts[0]
    for part, separator in zip(parts[1:], separators, strict=False):
        out += separator + part
    return out + trailing


names = st.builds(_join_labels, st.lists(labels, min_size=1, max_size=4),
                  st.lists(st.sampled_from(LABEL_SEPARATORS), min_size=3, max_size=3),
                  st.sampled_from(["", "", ".", "\u3002"]))


ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.sampled_from(["[::1]", "[2001:db8::1]", "[FE80::1:2]", "[::ffff:192.0.2.1]"])
hosts = names | ipv4 | ipv6
ports = st.none() | st.integers(0, 65535) | st.sampled_from([80, 443])
userinfo = st.none() | st.text(alphabet=string.ascii_letters + string.digits + ":._~-", max_size=12)
escapes = st.tuples(st.sampled_from(HEX), st.sampled_from(HEX)).map(lambda t: "%" + "".join(t))
path_chars = st.characters(exclude_characters="?#", exclude_categories=("Cs",))
path_pieces = st.text(alphabet=path_chars, max_size=6) | escapes | st.sampled_from(["/", "%", "%25", "~", "%7E", "+"])
paths = st.lists(path_pieces, max_size=8).map(lambda pieces: "/" + "".join(pieces)) | st.just("")
tracking_keys = st.sampled_from(sorted(TRACKING_PARAMS)) | st.builds(
    lambda prefix, rest: prefix + rest, st.sampled_from(TRACKING_PREFIXES), st.text(max_size=6))
query_keys = st.text(max_size=8)
query_values = st.text(max_size=8)


def _case(text: str, flips: list[bool]) -> str:
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips + [False] * len(text), strict=False))


@st.composite
def urls(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    """An http(s) URL from random parts, and the query pairs it carries that are not tracking ones."""
    scheme = _case(draw(st.sampled_from(["http", "https"])), draw(st.lists(st.booleans(), max_size=5)))
    host = _case(draw(hosts), draw(st.lists(st.booleans(), max_size=20)))
    user = draw(userinfo)
    port = draw(ports)
    netloc = (f"{user}@" if user is not None else "") + host + (f":{port}" if port is not None else "")
    kept = draw(st.lists(st.tuples(query_keys, query_values), max_size=4))
    kept = [(k, v) for k, v in kept if not _tracking(k)]
    tracking = [(_case(k, draw(st.lists(st.booleans(), max_size=8))), v)
                for k, v in draw(st.lists(st.tuples(tracking_keys, query_values), max_size=4))]
    pairs = draw(st.permutations(kept + tracking))
    query = ("?" + urlencode(pairs)) if pairs or draw(st.booleans()) else ""
    fragment = draw(st.none() | st.text(max_size=8))
    url = f"{scheme}://{netloc}{draw(paths)}{query}" + (f"#{fragment}" if fragment is not None else "")
    padding = draw(st.sampled_from(["", " ", "\t", "\n "]))
    return padding + url + padding, kept


def _tracking(key: str) -> bool:
    key = key.lower()
    return key in TRACKING_PARAMS or key.startswith(TRACKING_PREFIXES)


@PROPERTY
@given(urls())
@example(case=("https://a.example/%%341", []))
@example(case=("https://a.example\u3002/", []))
def test_normalise_url_is_idempotent(case: tuple[str, list[tuple[str, str]]]) -> None:
    url, _ = case
    once = normalise_url(url)
    assert normalise_url(once) == once


@PROPERTY
@given(urls())
def test_normalise_url_drops_tracking_keeps_the_rest_and_lower_cases_scheme_and_host(
        case: tuple[str, list[tuple[str, str]]]) -> None:
    url, kept = case
    result = normalise_url(url)
    parts = urlsplit(result)
    assert parts.scheme in ("http", "https")
    assert result.startswith(f"{parts.scheme}://")
    assert parts.netloc == parts.netloc.lower(), result  # the host (and the port's digits)
    assert "#" not in result and "@" not in parts.netloc  # no fragment, no user-info
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    assert not [key for key, _ in pairs if _tracking(key)], result
    assert pairs == sorted(kept), result  # everything else survives, sorted
    if parts.port is not None:
        assert str(parts.port) != {"http": "80", "https": "443"}[parts.scheme]


@PROPERTY
@given(urls())
def test_normalise_url_is_idempotent_away_from_those_two_causes(case: tuple[str, list[tuple[str, str]]]) -> None:
    """Idempotence away from the two bugs above, so the rest stays guarded meanwhile."""
    url, _ = case
    parts = urlsplit(url.strip())
    assume(not re.search(r"[\u3002\uff0e\uff61]", parts.netloc))
    assume(not re.search(r"%(?![0-9A-Fa-f]{2})", parts.path))  # no '%' that is not an escape
    once = normalise_url(url)
    assert normalise_url(once) == once


contract_urls = st.builds(lambda scheme, rest: scheme + rest, st.sampled_from(["http://", "https://", "HTTPS://"]),
                          st.text(max_size=40))


@PROPERTY
@given(contract_urls)
@example(url="http://[")
def test_normalise_url_never_raises_on_a_url_the_contract_accepts(url: str) -> None:
    obj = {**VALID_BASE, "url": url}
    try:
        parse_article(json.dumps(obj).encode())
    except InvalidArticle:
        assume(False)  # blank or too long: not a URL the stages ever see
    result = normalise_url(url)
    assert result.startswith(("http://", "https://"))


# -------------------------------------------------------------------------------------------------
# Text normalisation
# -------------------------------------------------------------------------------------------------

NEWSY_FRAGMENTS = [
    "&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&#8203;", "&nbsp;", "&shy;", "&", "amp;", "lt;", "#",
    *ZERO_WIDTH, "\u00a0", "\u2009", "\u3000", "\u2028", "\r\n", "\n", "\n\n", "\t", "\x00", "\x1b", "\x85",
    "\u2018", "\u2019", "\u201c", "\u201d", "\u2013", "\u2014", "\u2026", "\u00b4", "`",
    "e", "\u0301", "\u0308", "A", "\u00c9", "\u00df", "\u0130", "\ufb01", "\uff21", "\u2460", "\u1e9e",
    "WASHINGTON (AP) \u2014 ", "LONDON, July 2 (Reuters) - ", "By Jane Doe", "Advertisement", "Share this article",
    "\u00a9 2024 Media", "Read more: x", "Photo: Someone", "2024-07-02", "Home > News",
    "The council voted to approve the plan on Tuesday.", "Residents said they were pleased with it, ",
    " ", "  ", ".", ",", "{", "}", "();", "function (",
]
newsy_text = st.lists(st.sampled_from(NEWSY_FRAGMENTS) | st.text(max_size=4), max_size=40).map("".join)
texts = st.text() | newsy_text  # st.text(): any unicode without surrogates, control characters included


@PROPERTY
@given(texts)
@example(text="T\u0308")
def test_normalise_text_output_is_folded(text: str) -> None:
    out = normalise_text(text)
    assert not set(out) & set(ZERO_WIDTH), repr(out)
    assert not set(out) & set(CONTROL.replace(" ", "")), repr(out)
    assert all(ch == " " for ch in out if ch.isspace()), repr(out)  # the only whitespace is a single space
    assert "  " not in out and out == out.strip(), repr(out)
    # Casefolded, then composed again by NFKC: "T" + diaeresis gives "ẗ", whose casefold is "t" + diaeresis.
    assert unicodedata.normalize("NFKC", out.casefold()) == out, repr(out)
    assert not set(out) & set("\u2018\u2019\u201c\u201d\u2013\u2014\u2026"), repr(out)


@PROPERTY
@given(texts)
@example(text="&amp;lt;")
@example(text="e\u200b\u0301")
@example(text="\u00df\u0301")
def test_normalise_text_is_idempotent(text: str) -> None:
    once = normalise_text(text)
    assert normalise_text(once) == once


@PROPERTY
@given(texts)
def test_normalise_text_is_idempotent_away_from_those_three_causes(text: str) -> None:
    """Idempotence away from the three causes above, so the rest stays guarded meanwhile."""
    folded = unicodedata.normalize("NFKC", text)
    assume("&" not in folded)
    assume(not re.search(f"[{ZERO_WIDTH}]", text))
    assume(unicodedata.is_normalized("NFKC", folded.casefold()))
    once = normalise_text(text)
    assert normalise_text(once) == once


@PROPERTY
@given(texts)
def test_clean_text_only_removes_text(text: str) -> None:
    """Every word of the cleaned text is a word of the input, in the input's order; only the first may
    have lost a prefix (the wire dateline "WASHINGTON (AP) —" glued to it)."""
    out = clean_text(text)
    source = text.translate(dict.fromkeys(map(ord, ZERO_WIDTH)))
    words, available = out.split(), source.split()
    position = 0
    for index, word in enumerate(words):
        while position < len(available) and not (
                available[position] == word or (index == 0 and available[position].endswith(word))):
            position += 1
        assert position < len(available), f"{word!r} (word {index} of the output) is not in the input"
        position += 1
    assert len(out) <= len(text)
    assert not set(out) & set(ZERO_WIDTH)


@PROPERTY
@given(texts)
def test_clean_then_normalise_never_raises_and_is_stable(text: str) -> None:
    """The prepare chain's two text steps, as prepare runs them: total and deterministic."""
    first = normalise_text(clean_text(text))
    assert normalise_text(clean_text(text)) == first
    assert isinstance(first, str)


# -------------------------------------------------------------------------------------------------
# Shingles and fingerprints
# -------------------------------------------------------------------------------------------------

configs = st.builds(FingerprintConfig, num_perm=st.sampled_from([16, 64, 128]), seed=st.integers(0, 2 ** 31),
                    word_shingle_size=st.integers(1, 6), char_shingle_size=st.integers(1, 6))
LATIN = string.ascii_letters + "àáâäçèéêëìíîïñòóôöùúûüÿßæøåÀÉÖÜ" + string.digits + "_"
latin_words = st.lists(st.text(alphabet=LATIN, min_size=1, max_size=10), max_size=60)
separators = st.sampled_from([" ", "  ", ", ", ". ", "\n", " - ", "! ", "'"])
CJK = "".join(map(chr, range(0x4e00, 0x4e40))) + "".join(map(chr, range(0x3041, 0x3060)))


@st.composite
def latin_texts(draw: st.DrawFn) -> tuple[str, list[str]]:
    words = draw(latin_words)
    text = ""
    for word in words:
        text += word + draw(separators)
    return text, words


def check_fingerprint(text: str, config: FingerprintConfig) -> None:
    grams = shingles(text, config)
    fp = fingerprint(text, config)
    assert fp.shingle_hashes.dtype == np.uint32 and fp.shingle_hashes.ndim == 1
    assert np.all(np.diff(fp.shingle_hashes.astype(np.int64)) > 0)  # sorted, unique
    distinct = plain_shingle_hashes(text, config)
    assert fp.num_shingles == len(distinct) <= len(grams)  # equal unless two shingles share a 32-bit hash
    assert set(fp.shingle_hashes.tolist()) == distinct
    assert fp.signature.dtype == np.uint32 and fp.signature.shape == (config.num_perm,)
    assert re.fullmatch(r"[0-9a-f]{64}", fp.content_hash)
    again = fingerprint("".join(list(text)), config)  # an equal string, another object
    assert again.content_hash == fp.content_hash
    assert np.array_equal(again.signature, fp.signature)
    assert np.array_equal(again.shingle_hashes, fp.shingle_hashes)


@PROPERTY
@given(texts | st.text(alphabet=CJK + " ,。", max_size=60), configs)
def test_fingerprint_is_total_and_deterministic(text: str, config: FingerprintConfig) -> None:
    check_fingerprint(text, config)
    check_fingerprint(normalise_text(text), config)


@PROPERTY
@given(latin_texts(), configs)
def test_word_shingles_of_latin_text_have_the_configured_size(case: tuple[str, list[str]],
                                                             config: FingerprintConfig) -> None:
    text, words = case
    n = config.word_shingle_size
    assert tokenise(text) == words
    grams = {gram.decode("utf-8") for gram in shingles(text, config)}
    expected = {" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))} - {""}
    assert grams == expected
    for gram in grams:
        size = len(gram.split(" "))
        assert size == n if len(words) >= n else size == len(words), gram
    if not words:
        assert grams == set()
    check_fingerprint(text, config)


@PROPERTY
@given(st.text(alphabet=CJK + " ", min_size=1, max_size=60), configs)
def test_character_shingles_have_the_configured_size(text: str, config: FingerprintConfig) -> None:
    chars = "".join(text.split())
    assume(chars)
    n = config.char_shingle_size
    grams = {gram.decode("utf-8") for gram in shingles(text, config)}
    assert grams == {chars[i:i + n] for i in range(max(1, len(chars) - n + 1))}
    assert all(len(gram) == min(n, len(chars)) for gram in grams)


# -------------------------------------------------------------------------------------------------
# Kafka security settings pass through to kafka-python (a pure check: no broker involved)
# -------------------------------------------------------------------------------------------------

secrets = st.text(alphabet=string.ascii_letters + string.digits + "!#$%&*+-./:;=?@^_~ ", max_size=30).map(
    lambda tail: "Zq9!" + tail)  # distinctive, so "not in repr" means something
users = st.text(alphabet=string.ascii_lowercase, max_size=12).map(lambda tail: "user-" + tail)
mechanisms = st.sampled_from(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
cafiles = st.sampled_from(["/etc/ssl/ca.pem", "/run/secrets/kafka ca.pem"])


@FAST
@given(mechanisms, users, secrets, cafiles, st.booleans(), st.booleans())
def test_sasl_ssl_settings_pass_through_to_kafka_python(mechanism: str, user: str, password: str, cafile: str,
                                                        mutual_tls: bool, from_environment: bool) -> None:
    values = {"kafka_bootstrap_servers": "b1.example:9093,b2.example:9093", "kafka_security_protocol": "SASL_SSL",
              "kafka_sasl_mechanism": mechanism, "kafka_sasl_username": user, "kafka_sasl_password": password,
              "kafka_ssl_cafile": cafile}
    if mutual_tls:
        values |= {"kafka_ssl_certfile": "/etc/ssl/client.pem", "kafka_ssl_keyfile": "/etc/ssl/client.key"}
    if from_environment:  # NEWSDEDUP_* variables, as a deployment sets them
        settings_ = load_settings({env_name(name): value for name, value in values.items()})
    else:  # command-line flags
        settings_ = load_settings({}, values)
    config = client_config(settings_)
    expected = {
        "bootstrap_servers": ["b1.example:9093", "b2.example:9093"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
        "ssl_cafile": cafile,
    }
    if mutual_tls:
        expected |= {"ssl_certfile": "/etc/ssl/client.pem", "ssl_keyfile": "/etc/ssl/client.key"}
    assert config == expected
    assert password not in repr(settings_)  # the settings' repr hides it (logs, tracebacks)


def test_plaintext_settings_send_no_credentials() -> None:
    config = client_config(load_settings({}, {"kafka_sasl_username": "u", "kafka_sasl_password": "p"}))
    assert config["security_protocol"] == "PLAINTEXT"
    assert not {key for key in config if key.startswith(("sasl_", "ssl_"))}
