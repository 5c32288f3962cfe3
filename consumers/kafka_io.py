"""Kafka plumbing shared by the roles: client settings, topics, producers, consumers, dead letters."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError, TopicAlreadyExistsError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import MemberState, TopicPartition

from consumers.fetch_guard import FetchGuard
from consumers.lifecycle import StopFlag
from consumers.settings import Settings
from ingest.contract import TOO_LARGE
from ingest.producer import NO_LOSS

log = logging.getLogger(__name__)

# Dead-letter headers; the value is always the original bytes.
REASON_HEADER = "newsdedup.reason"
DETAIL_HEADER = "newsdedup.detail"
SOURCE_HEADERS = ("newsdedup.source.topic", "newsdedup.source.partition", "newsdedup.source.offset")
TRUNCATED_HEADER = "newsdedup.truncated"  # set when the value had to be cut to fit: its original size
PROCESSING_ERROR = "processing_error"  # an unexpected failure on a message that passed validation

# Room for a record's key, headers and batch framing on top of its value.
RECORD_OVERHEAD_BYTES = 65_536
# A dead letter too large even for the dead-letter topic keeps this much of its value.
DEAD_LETTER_CUT_BYTES = 65_536
# Errors that refuse one record for its size: that record's problem, not the batch's.
SIZE_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError)


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


def topic_max_bytes(settings: Settings) -> dict[str, int]:
    """Each topic's ``max.message.bytes``, sized so that anything the contract accepts gets through.

    Kafka's default (about 1 MB) is below the contract's limit (max_message_bytes, 2 MB by
    default). A fingerprinted record carries the text and its shingle hashes (up to about 3.7x the
    text), a dead letter the original bytes plus headers, compressed (random bytes grow).
    """
    raw = settings.max_message_bytes + RECORD_OVERHEAD_BYTES
    return {
        settings.topic_raw: raw,
        settings.topic_fingerprinted: 4 * raw,
        settings.topic_dead_letters: 2 * raw,
        settings.topic_story_events: 1_048_588,  # Kafka's default: events are small
    }


def ensure_topics(settings: Settings) -> list[str]:
    """Create the service's topics if missing; returns the names created."""
    wanted = {
        settings.topic_raw: settings.raw_partitions,
        settings.topic_fingerprinted: settings.fingerprinted_partitions,
        settings.topic_dead_letters: 1,
        settings.topic_story_events: 1,
    }
    max_bytes = topic_max_bytes(settings)
    admin = KafkaAdminClient(**client_config(settings))
    try:
        missing = [name for name in wanted if name not in set(admin.list_topics())]
        created = []
        for name in missing:
            try:
                config = {"max.message.bytes": str(max_bytes[name])}
                admin.create_topics([NewTopic(name, wanted[name], replication_factor=-1, topic_configs=config)])
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
        # The largest topic limit; each topic's own limit is checked by the broker.
        max_request_size=max(topic_max_bytes(settings).values()),
    )


def make_consumer(settings: Settings, group_id: str) -> KafkaConsumer:
    return KafkaConsumer(
        **client_config(settings),
        group_id=group_id,
        enable_auto_commit=False,  # offsets are committed after the results are safe
        auto_offset_reset="earliest",
        # Records of an aborted transaction are never stored, and those of an open one wait for its commit:
        # producers in the wild (Java, librdkafka) write transactionally.
        isolation_level="read_committed",
        max_poll_records=settings.batch_max_messages,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(100, settings.session_timeout_ms // 4),
        max_partition_fetch_bytes=max(1_048_576, settings.max_message_bytes + 65_536),
        fetch_max_bytes=max(52_428_800, settings.max_message_bytes + 65_536),
    )


def subscribe_when_known(consumer: KafkaConsumer, topic: str, listener: ConsumerRebalanceListener,
                         stop: StopFlag, timeout: float = 60.0) -> None:
    """Subscribe once the consumer's metadata holds the topic's partitions.

    A fresh consumer that leads its group before its metadata has the topic assigns nothing
    ("No partition metadata for topic"), and the group rebalances again: the moment where
    kafka-python 3.0.12 can wedge for good (dpkp/kafka-python#3121).
    """
    deadline = time.monotonic() + timeout
    while not _partitions_known(consumer, topic) and time.monotonic() < deadline:
        if stop.wait(0.5):
            break
    consumer.subscribe([topic], listener=listener)


def _partitions_known(consumer: KafkaConsumer, topic: str) -> bool:
    try:
        return bool(consumer.partitions_for_topic(topic))
    except KafkaError:  # no broker answers yet: the wait goes on
        return False


def poll(consumer: KafkaConsumer, settings: Settings, stop: StopFlag,
         guard: FetchGuard) -> dict[TopicPartition, list[ConsumerRecord]]:
    """One poll; an error from the client (it raises when no broker answers a metadata refresh) is an
    empty poll after a pause, not the end of the role: the consumer resumes when a broker is back.
    A batch the client cannot decode pauses its partition through ``guard`` (see consumers.fetch_guard)."""
    try:
        return consumer.poll(timeout_ms=settings.poll_timeout_ms, max_records=settings.batch_max_messages)
    except Exception as exc:
        if guard.caught(exc):
            return {}
        if not isinstance(exc, KafkaError):
            raise
        log.warning("poll failed; trying again", extra={"error": type(exc).__name__})
        stop.wait(1.0)
        return {}


def joining_group(consumer: KafkaConsumer) -> bool:
    """True while the consumer is outside a settled group membership although a broker answers.

    A join takes seconds. kafka-python 3.0.12 can instead stay outside its group for good after a
    rebalance (partitions revoked, never assigned again, polls going on): the watchdog saw progress
    and the role held nothing. Roles do not count such polls as progress, so the watchdog restarts
    them. While no broker answers, waiting is right: those polls still count. Reads the client's
    internals (no public API tells); False if they are not there.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    try:
        unsettled = coordinator.state != MemberState.STABLE or coordinator.need_rejoin()  # type: ignore[union-attr]
        return bool(unsettled) and kafka_connected(consumer)
    except AttributeError:
        return False


def kafka_connected(consumer: KafkaConsumer) -> bool:
    """True while the consumer holds a live connection to a broker of the cluster.

    Not KafkaConsumer.bootstrap_connected(): in kafka-python 3 that is True only while the first
    bootstrap is in flight, so it is False for the whole life of a working consumer.
    """
    client = consumer._client  # the consumer has no public "connected" API
    return any(client.connected(broker.node_id) for broker in client.cluster.brokers())


Sent = FutureRecordMetadata | KafkaError  # a send in flight, or the error that refused it at once


def try_send(producer: KafkaProducer, topic: str, **record: Any) -> Sent:
    """``producer.send``, with a record too large for the producer returned as its error, not raised."""
    try:
        return producer.send(topic, **record)
    except SIZE_ERRORS as exc:
        return exc


def refused_for_size(sent: Sent) -> bool:
    """After a flush: True if the record was refused for its size; other failures raise."""
    if isinstance(sent, KafkaError):
        if isinstance(sent, SIZE_ERRORS):
            return True
        raise sent
    try:
        sent.get(timeout=0)
    except SIZE_ERRORS:
        return True
    return False


def send_dead_letter(producer: KafkaProducer, topic: str, record: ConsumerRecord, reason: str, detail: str,
                     cut: bool = False) -> Sent:
    """Original bytes and key, with the reason and the source position in headers.

    ``cut`` keeps only the first DEAD_LETTER_CUT_BYTES of the value (and says so in a header): the
    last resort for a message larger than even the dead-letter topic accepts.
    """
    value = record.value
    headers = [
        (REASON_HEADER, reason.encode()),
        (DETAIL_HEADER, detail[:1000].encode("utf-8", "replace")),
        *zip(SOURCE_HEADERS, (record.topic.encode(), str(record.partition).encode(), str(record.offset).encode()),
             strict=True),
    ]
    key = record.key
    if cut:
        if value is not None and len(value) > DEAD_LETTER_CUT_BYTES:
            headers.append((TRUNCATED_HEADER, str(len(value)).encode()))
            value = value[:DEAD_LETTER_CUT_BYTES]
        key = key[:1024] if key is not None else None
    return try_send(producer, topic, value=value, key=key, headers=headers)


@dataclass(frozen=True)
class Outgoing:
    """A send in flight for one consumed record: its result (``reason`` None) or its dead letter."""

    record: ConsumerRecord
    sent: Sent
    reason: str | None = None
    detail: str = ""
    cut: bool = False


def dead_letter(producer: KafkaProducer, topic: str, record: ConsumerRecord, reason: str, detail: str,
                cut: bool = False) -> Outgoing:
    return Outgoing(record, send_dead_letter(producer, topic, record, reason, detail, cut), reason, detail, cut)


def deliver(producer: KafkaProducer, dead_letter_topic: str, outgoing: list[Outgoing]) -> int:
    """Flush and check every send; returns how many results were dead-lettered for their size.

    A record refused for its size must not fail its batch (read, refused and read again forever):
    a result goes to the DLQ as its consumed record (reason too_large), a dead letter is sent again
    cut to fit. Any other failure raises, so the caller does not commit the batch.
    """
    turned = 0
    while outgoing:
        producer.flush()
        again = []
        for out in outgoing:
            if not refused_for_size(out.sent):
                continue
            log.warning("refused by Kafka for its size; dead-lettering it", extra={
                "partition": out.record.partition, "offset": out.record.offset, "reason": out.reason, "cut": out.cut})
            if out.cut:
                raise RuntimeError(f"a dead letter cut to fit was refused (offset {out.record.offset})")
            if out.reason is None:
                turned += 1
                again.append(dead_letter(producer, dead_letter_topic, out.record, TOO_LARGE,
                                         "the result was refused by Kafka for its size"))
            else:
                again.append(dead_letter(producer, dead_letter_topic, out.record, out.reason, out.detail, cut=True))
        outgoing = again
    return turned
