"""Kafka plumbing shared by the roles: client settings, topics, producers, consumers, dead letters."""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import TopicAlreadyExistsError

from consumers.settings import Settings
from ingest.producer import NO_LOSS

log = logging.getLogger(__name__)

# Dead-letter headers; the value is always the original bytes.
REASON_HEADER = "newsdedup.reason"
DETAIL_HEADER = "newsdedup.detail"
SOURCE_HEADERS = ("newsdedup.source.topic", "newsdedup.source.partition", "newsdedup.source.offset")
PROCESSING_ERROR = "processing_error"  # an unexpected failure on a message that passed validation


def client_config(settings: Settings) -> dict[str, Any]:
    """Connection and security settings, passed through to every kafka-python client."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        config.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                      sasl_plain_username=settings.kafka_sasl_username,
                      sasl_plain_password=settings.kafka_sasl_password)
    for name in ("cafile", "certfile", "keyfile"):
        value = getattr(settings, f"kafka_ssl_{name}")
        if value:
            config[f"ssl_{name}"] = value
    return config


def ensure_topics(settings: Settings) -> list[str]:
    """Create the service's topics if missing; returns the names created."""
    wanted = {
        settings.topic_raw: settings.raw_partitions,
        settings.topic_fingerprinted: settings.fingerprinted_partitions,
        settings.topic_dead_letters: 1,
        settings.topic_story_events: 1,
    }
    admin = KafkaAdminClient(**client_config(settings))
    try:
        missing = [name for name in wanted if name not in set(admin.list_topics())]
        created = []
        for name in missing:
            try:
                admin.create_topics([NewTopic(name, wanted[name], replication_factor=-1)])
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # another process created it meanwhile
        if created:
            log.info("created topics", extra={"topics": created})
        return created
    finally:
        admin.close()


def make_producer(settings: Settings) -> KafkaProducer:
    compression = None if settings.kafka_compression_type == "none" else settings.kafka_compression_type
    return KafkaProducer(
        **client_config(settings),
        **NO_LOSS,
        compression_type=compression,
        max_request_size=max(1_048_576, settings.max_message_bytes + 65_536),
    )


def make_consumer(settings: Settings, group_id: str) -> KafkaConsumer:
    return KafkaConsumer(
        **client_config(settings),
        group_id=group_id,
        enable_auto_commit=False,  # offsets are committed after the results are safe
        auto_offset_reset="earliest",
        max_poll_records=settings.batch_max_messages,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(100, settings.session_timeout_ms // 4),
        max_partition_fetch_bytes=max(1_048_576, settings.max_message_bytes + 65_536),
        fetch_max_bytes=max(52_428_800, settings.max_message_bytes + 65_536),
    )


def kafka_connected(consumer: KafkaConsumer) -> bool:
    """True while the consumer holds a live connection to a broker of the cluster.

    Not KafkaConsumer.bootstrap_connected(): in kafka-python 3 that is True only while the first
    bootstrap is in flight, so it is False for the whole life of a working consumer.
    """
    client = consumer._client  # the consumer has no public "connected" API
    return any(client.connected(broker.node_id) for broker in client.cluster.brokers())


def send_dead_letter(producer: KafkaProducer, topic: str, record: ConsumerRecord, reason: str, detail: str) -> Any:
    """Original bytes and key, with the reason and the source position in headers."""
    headers = [
        (REASON_HEADER, reason.encode()),
        (DETAIL_HEADER, detail[:1000].encode("utf-8", "replace")),
        *zip(SOURCE_HEADERS, (record.topic.encode(), str(record.partition).encode(), str(record.offset).encode()),
             strict=True),
    ]
    return producer.send(topic, value=record.value, key=record.key, headers=headers)
