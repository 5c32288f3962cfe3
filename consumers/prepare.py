"""The prepare chain: a validated article → a prepared (cleaned, fingerprinted) article.

Pure: the same function serves the Kafka prepare role and embedded mode. The wire codec for
``articles.fingerprinted`` sits here too, beside the type it carries.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import numpy as np

from consumers.stages.extract import extract_text
from consumers.stages.fingerprint import (
    Fingerprint,
    FingerprintConfig,
    array_from_bytes,
    array_to_bytes,
    fingerprint,
)
from consumers.stages.normalise import clean_text, normalise_text
from ingest.contract import EMPTY_TEXT, Article, InvalidArticle, format_time, parse_time
from ingest.urls import normalise_url

WIRE_VERSION = 2  # 2: shingle hashes travel with the signature
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a record came from: the position of the raw message (or the input file line)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class PreparedArticle:
    key: str  # identity of (normalised URL, content): re-sending it is a no-op
    input_id: str
    url: str
    url_normalised: str
    source: str
    title: str
    text: str  # cleaned text, as stored
    published_at: datetime
    scraped_at: datetime | None
    lang: str
    content_hash: str
    signature: np.ndarray
    shingle_hashes: np.ndarray
    fingerprint_identity: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def num_shingles(self) -> int:
        return len(self.shingle_hashes)


def article_key(url_normalised: str, content_hash: str) -> str:
    return hashlib.blake2b(f"{url_normalised}\n{content_hash}".encode(), digest_size=12).hexdigest()


def prepare_article(article: Article, config: FingerprintConfig,
                    observe: Callable[[str, float], None] | None = None) -> PreparedArticle:
    """extract → clean → normalise → fingerprint. Raises InvalidArticle when no text is left.

    ``observe(stage, seconds)``, when given, is told how long each stage took.
    """
    clock = _StageClock(observe)
    if article.body and article.body.strip():
        raw_text = article.body
    else:
        raw_text = clock.run("extract", extract_text, article.html or "")
    text = clock.run("clean", clean_text, raw_text)
    normalised = clock.run("normalise", normalise_text, text)
    if not normalised:
        raise InvalidArticle(EMPTY_TEXT, "no article text left after extraction and cleaning")
    fp = clock.run("fingerprint", fingerprint, normalised, config)
    url_normalised = normalise_url(article.url)
    return PreparedArticle(
        key=article_key(url_normalised, fp.content_hash),
        input_id=article.id,
        url=article.url,
        url_normalised=url_normalised,
        source=article.source,
        title=article.title,
        text=text,
        published_at=article.published_at,
        scraped_at=article.scraped_at,
        lang=article.lang,
        content_hash=fp.content_hash,
        signature=fp.signature,
        shingle_hashes=fp.shingle_hashes,
        fingerprint_identity=config.identity,
        metadata=article.metadata,
    )


class _StageClock:
    def __init__(self, observe: Callable[[str, float], None] | None) -> None:
        self._observe = observe

    def run(self, stage: str, function: Callable[..., T], *args: Any) -> T:
        if self._observe is None:
            return function(*args)
        started = time.perf_counter()
        result = function(*args)
        self._observe(stage, time.perf_counter() - started)
        return result


def fingerprint_again(text: str, content_hash: str, config: FingerprintConfig) -> Fingerprint | None:
    """The fingerprint ``prepare_article`` makes under ``config`` of an article's cleaned text
    (``PreparedArticle.text``, the stored body), or None if the text no longer normalises to
    ``content_hash``: normalisation changed since, and the article key (made from that hash) would
    change with it, which a new fingerprint cannot repair."""
    fp = fingerprint(normalise_text(text), config)
    return fp if fp.content_hash == content_hash else None


def refingerprint(prepared: PreparedArticle, config: FingerprintConfig) -> PreparedArticle:
    """The article with its signature and shingle hashes made under ``config``, recomputed from its text
    when a prepare of another fingerprint identity made them (an upgrade under way: old records still
    in the topic, or old prepare workers still running). ValueError if the text no longer normalises
    to the same content: its key would change."""
    if prepared.fingerprint_identity == config.identity:
        return prepared
    fp = fingerprint_again(prepared.text, prepared.content_hash, config)
    if fp is None:
        raise ValueError(f"fingerprinted as {prepared.fingerprint_identity!r}, and its text normalises to other "
                         f"content under {config.identity!r} (its key would change)")
    return replace(prepared, signature=fp.signature, shingle_hashes=fp.shingle_hashes,
                   fingerprint_identity=config.identity)


def encode_prepared(prepared: PreparedArticle, lineage: Lineage) -> bytes:
    """JSON for ``articles.fingerprinted``; the signature travels as base64 little-endian uint32."""
    return json.dumps({
        "wire_version": WIRE_VERSION,
        "key": prepared.key,
        "input_id": prepared.input_id,
        "url": prepared.url,
        "url_normalised": prepared.url_normalised,
        "source": prepared.source,
        "title": prepared.title,
        "text": prepared.text,
        "published_at": format_time(prepared.published_at),
        "scraped_at": format_time(prepared.scraped_at) if prepared.scraped_at else None,
        "lang": prepared.lang,
        "content_hash": prepared.content_hash,
        "signature": base64.b64encode(array_to_bytes(prepared.signature)).decode("ascii"),
        "shingle_hashes": base64.b64encode(array_to_bytes(prepared.shingle_hashes)).decode("ascii"),
        "fingerprint_identity": prepared.fingerprint_identity,
        "metadata": prepared.metadata,
        "lineage": [lineage.topic, lineage.partition, lineage.offset, lineage.timestamp_ms],
    }, ensure_ascii=False).encode("utf-8")


def decode_prepared(raw: bytes) -> tuple[PreparedArticle, Lineage]:
    """Inverse of encode_prepared. Raises ValueError (or KeyError) on a record it cannot read."""
    obj = json.loads(raw)
    if obj.get("wire_version") != WIRE_VERSION:
        raise ValueError(f"wire_version {obj.get('wire_version')!r} is not {WIRE_VERSION}")
    topic, partition, offset, timestamp_ms = obj["lineage"]
    prepared = PreparedArticle(
        key=obj["key"],
        input_id=obj["input_id"],
        url=obj["url"],
        url_normalised=obj["url_normalised"],
        source=obj["source"],
        title=obj["title"],
        text=obj["text"],
        published_at=parse_time(obj["published_at"]),
        scraped_at=parse_time(obj["scraped_at"]) if obj["scraped_at"] else None,
        lang=obj["lang"],
        content_hash=obj["content_hash"],
        signature=array_from_bytes(base64.b64decode(obj["signature"])),
        shingle_hashes=array_from_bytes(base64.b64decode(obj["shingle_hashes"])),
        fingerprint_identity=obj["fingerprint_identity"],
        metadata=obj.get("metadata") or {},
    )
    return prepared, Lineage(topic, int(partition), int(offset), timestamp_ms)
