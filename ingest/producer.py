"""The producer library scrapers import: validated articles onto ``articles.raw``, nothing lost.

    from ingest.producer import ArticleProducer

    with ArticleProducer("kafka:9092") as producer:
        producer.send({"id": "42", "url": "https://example.com/a", "source": "example.com",
                       "title": "...", "body": "...", "published_at": "2024-07-01T10:00:00Z"})
    # leaving the block flushes; undelivered articles raise DeliveryError

Messages are keyed by the normalised URL, so every version of one page lands on one partition
in order. The producer is idempotent with acks=all and retries, so a broker failover neither
loses nor duplicates a send. Batches are zstd-compressed by default (``compression_type``: none,
gzip, lz4 or zstd).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from ingest.contract import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Article,
    InvalidArticle,
    article_from_dict,
    article_to_dict,
)
from ingest.urls import normalise_url

DEFAULT_TOPIC = "articles.raw"
NO_LOSS = {
    "acks": "all",
    "enable_idempotence": True,
    "retries": 2_147_483_647,  # bounded by delivery_timeout_ms instead
    "delivery_timeout_ms": 120_000,
    "max_in_flight_requests_per_connection": 5,  # ordering holds with idempotence up to 5
    # Not about loss, but shared by every producer of the service: batching. kafka-python's default
    # batch (16 KB) holds three fingerprinted records (~5 KB each), so each flush of a prepare batch
    # went out as ~170 record batches, each compressed, checksummed, sent and acknowledged alone.
    # 1 MiB is still under every topic's max.message.bytes (Kafka's default, 1,048,588, included):
    # only a record larger than the batch, alone in its batch, can be refused for its size.
    "linger_ms": 10,
    "batch_size": 1_048_576,
}


class DeliveryError(RuntimeError):
    """Some sends were not acknowledged by the brokers; ``failures`` lists (article id, error)."""

    def __init__(self, failures: list[tuple[str, str]]) -> None:
        super().__init__(f"{len(failures)} article(s) were not delivered, first: {failures[0][0]}: {failures[0][1]}")
        self.failures = failures


@dataclass
class _Pending:
    article_id: str
    future: Any


class ArticleProducer:
    def __init__(
        self,
        bootstrap_servers: str,
        topic: str = DEFAULT_TOPIC,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        compression_type: str | None = "zstd",
        **kafka_config: Any,
    ) -> None:
        """``kafka_config`` passes through to kafka-python (TLS / SASL settings, client_id, ...)."""
        self.topic = topic
        self.max_message_bytes = max_message_bytes
        config = {**NO_LOSS, **kafka_config}
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers.split(","),
            compression_type=None if compression_type in (None, "none") else compression_type,
            max_request_size=max(1_048_576, max_message_bytes + 65_536),
            **config,
        )
        self._pending: list[_Pending] = []

    def send(self, article: Article | Mapping[str, Any]) -> None:
        """Validate and send one article. Raises InvalidArticle at once for a bad article."""
        if not isinstance(article, Article):
            article = article_from_dict(dict(article))
        value = json.dumps(article_to_dict(article), ensure_ascii=False).encode("utf-8")
        if len(value) > self.max_message_bytes:
            raise InvalidArticle("too_large", f"article {article.id} is {len(value)} bytes, the limit is "
                                              f"{self.max_message_bytes}")
        self.send_raw(value, key=normalise_url(article.url).encode("utf-8"), label=article.id)

    def send_raw(self, value: bytes, key: bytes | None = None, label: str = "") -> None:
        """Send bytes as they are (no validation): for relaying and for tests of the DLQ."""
        self._pending.append(_Pending(label, self._producer.send(self.topic, value=value, key=key)))

    def flush(self, timeout: float | None = None) -> int:
        """Wait for every send; return how many were delivered, or raise DeliveryError."""
        self._producer.flush(timeout=timeout)
        pending, self._pending = self._pending, []
        failures = []
        for item in pending:
            try:
                item.future.get(timeout=0)
            except KafkaError as exc:
                failures.append((item.article_id, f"{type(exc).__name__}: {exc}"))
        if failures:
            raise DeliveryError(failures)
        return len(pending)

    def close(self, timeout: float = 30) -> None:
        self._producer.close(timeout=timeout)

    def __enter__(self) -> ArticleProducer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                self.flush()
        finally:
            self.close()
