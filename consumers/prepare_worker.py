"""The prepare role: ``articles.raw`` → validate, extract, clean, fingerprint → ``articles.fingerprinted``.

Stateless; run as many as the raw topic has partitions (consumer group ``newsdedup-prepare``).
Per batch: (1) handle every message, sending results or dead letters; (2) flush the producer
and check every send; (3) commit the batch's offsets. A crash before (3) replays the batch,
which the matcher absorbs (article keys make the replay a no-op). A record the broker refuses
for its size is dead-lettered in (2) instead of failing the batch, which would otherwise be
read, refused and read again forever.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from kafka import ConsumerRebalanceListener, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from consumers.fetch_guard import FetchGuard
from consumers.kafka_io import (
    PROCESSING_ERROR,
    Outgoing,
    dead_letter,
    deliver,
    ensure_topics,
    joining_group,
    kafka_connected,
    make_consumer,
    make_producer,
    poll,
    subscribe_when_known,
    topic_max_bytes,
    try_send,
)
from consumers.lifecycle import StopFlag, Watchdog
from consumers.prepare import Lineage, encode_prepared, prepare_article
from consumers.settings import Settings
from consumers.stages.fingerprint import FingerprintConfig
from consumers.telemetry import Telemetry
from ingest.contract import MALFORMED_JSON, TOO_LARGE, InvalidArticle, parse_article

log = logging.getLogger(__name__)
ROLE = "prepare"


class _LogRebalances(ConsumerRebalanceListener):
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self.telemetry.assigned(assigned)
        log.info("partitions assigned", extra={"role": ROLE, "partitions": sorted(p.partition for p in assigned)})

    def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self.telemetry.revoked(revoked)
        log.info("partitions revoked", extra={"role": ROLE, "partitions": sorted(p.partition for p in revoked)})


def run_prepare(settings: Settings, stop: StopFlag, max_idle_polls: int | None = None) -> int:
    """Run until stopped (or until ``max_idle_polls`` empty polls in a row); returns messages handled."""
    telemetry = Telemetry(settings, ROLE)
    watchdog = Watchdog(telemetry.health, settings.watchdog_seconds).start()  # also bounds the close below
    ensure_topics(settings)
    consumer = make_consumer(settings, settings.prepare_group)
    producer = make_producer(settings)
    guard = FetchGuard(consumer, telemetry, settings.undecodable_hold_seconds)
    subscribe_when_known(consumer, settings.topic_raw, _LogRebalances(telemetry), stop)
    config = settings.fingerprint_config()
    record_limit = topic_max_bytes(settings)[settings.topic_fingerprinted]
    handled, idle = 0, 0
    log.info("prepare started", extra={"role": ROLE, "topic": settings.topic_raw})
    try:
        while not stop:
            batch = poll(consumer, settings, stop, guard)
            guard.check()
            if not joining_group(consumer):  # a join that never ends is no progress (see joining_group)
                telemetry.health.tick()
            telemetry.health.set("kafka", kafka_connected(consumer))
            telemetry.refresh_lag(consumer)
            if not batch:
                idle += 1
                if max_idle_polls is not None and idle >= max_idle_polls:
                    guard.check(idle_exit=True)
                    break
                continue
            idle = 0
            outgoing = []
            commit = {}
            for partition, records in batch.items():
                for record in records:
                    outgoing.append(handle_raw(record, producer, settings, config, telemetry, record_limit))
                    handled += 1
                commit[partition] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
                telemetry.processed(partition, records[-1])
            too_large = deliver(producer, settings.topic_dead_letters, outgoing)  # raises if a send failed
            for _ in range(too_large):
                telemetry.rejected(TOO_LARGE, dead_lettered=True)
            try:
                consumer.commit(commit)
                telemetry.metrics.commits.labels(role=ROLE).inc()
            except KafkaError as exc:  # at least once: the batch is read again after a restart or rebalance
                telemetry.metrics.commit_failures.labels(role=ROLE).inc()
                log.warning("offset commit failed; the batch may be prepared again",
                            extra={"role": ROLE, "error": type(exc).__name__})
    finally:
        log.info("prepare stopping", extra={"role": ROLE, "handled": handled})
        producer.close(timeout=10)
        consumer.close()
        telemetry.close()
        watchdog.stop()
    return handled


def handle_raw(record: ConsumerRecord, producer: KafkaProducer, settings: Settings,
               config: FingerprintConfig, telemetry: Telemetry, record_limit: int) -> Outgoing:
    """One raw message → a fingerprinted record (at most ``record_limit`` bytes) or a dead letter, sent."""
    try:
        if record.value is None:
            raise InvalidArticle(MALFORMED_JSON, "message has no value (a tombstone)")
        article = parse_article(record.value, settings.max_message_bytes)
        prepared = prepare_article(article, config, telemetry.stage)
        lineage = Lineage(record.topic, record.partition, record.offset, record.timestamp)
        value = encode_prepared(prepared, lineage)
        if len(value) > record_limit:
            raise InvalidArticle(TOO_LARGE,
                                 f"fingerprinted record is {len(value)} bytes, the topic takes {record_limit}")
    except InvalidArticle as exc:
        log.warning("rejected", extra={"role": ROLE, "topic": record.topic, "partition": record.partition,
                                       "offset": record.offset, "reason": exc.reason})
        telemetry.rejected(exc.reason, dead_lettered=True)
        return dead_letter(producer, settings.topic_dead_letters, record, exc.reason, exc.detail)
    except Exception as exc:  # one bad page must not stop the partition: it goes to the DLQ
        log.exception("processing failed", extra={"role": ROLE, "partition": record.partition,
                                                  "offset": record.offset})
        telemetry.rejected(PROCESSING_ERROR, dead_lettered=True)
        return dead_letter(producer, settings.topic_dead_letters, record, PROCESSING_ERROR,
                           f"{type(exc).__name__}: {exc}")
    telemetry.prepared()
    return Outgoing(record, try_send(producer, settings.topic_fingerprinted, key=prepared.lang.encode(), value=value))
