"""The match role: ``articles.fingerprinted`` → stories in the database → ``stories.events``.

Stateful: one active matcher per partition of the fingerprinted topic (consumer group
``newsdedup-match``); other members of the group are standbys that take over on a rebalance.
On assignment the matcher rebuilds its index from the database and seeks to the offset stored
there, so the database, not Kafka, says where to resume.

Per batch of one partition:
  1. match every record in memory;
  2. write articles, stories, events and the next offset in one database transaction;
  3. publish the batch's story events (at least once) and commit the offset to Kafka too, so
     lag tools see progress.
A crash before 2 replays the batch; a crash after it resumes from the stored offset.
If step 2 fails the in-memory state is thrown away and rebuilt from the database.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition
from sqlalchemy.exc import SQLAlchemyError

from consumers.embedded import build_matcher
from consumers.kafka_io import (
    PROCESSING_ERROR,
    ensure_topics,
    kafka_connected,
    make_consumer,
    make_producer,
    send_dead_letter,
)
from consumers.lifecycle import StopFlag
from consumers.matcher import Changes, Matcher
from consumers.matching import match_batch
from consumers.prepare import decode_prepared
from consumers.settings import Settings
from consumers.storage.store import OffsetMark, StoryStore
from consumers.telemetry import Telemetry

log = logging.getLogger(__name__)
ROLE = "match"
MAX_BACKOFF_SECONDS = 30.0
PING_SECONDS = 2.0


class MatchWorker(ConsumerRebalanceListener):
    def __init__(self, settings: Settings, store: StoryStore, consumer: KafkaConsumer,
                 producer: KafkaProducer, stop: StopFlag, telemetry: Telemetry) -> None:
        self.settings = settings
        self.store = store
        self.consumer = consumer
        self.producer = producer
        self.stop = stop
        self.telemetry = telemetry
        self.matchers: dict[int, Matcher] = {}
        self.handled = 0
        self._last_ping = 0.0
        telemetry.health.checks.update(kafka=False, database=True, index=True)

    # -- rebalance callbacks (run inside poll, between batches) ------------------------------

    def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self.telemetry.assigned(assigned)
        self.telemetry.health.set("index", False)
        for partition in assigned:
            log.info("partition assigned", extra={"role": ROLE, "partition": partition.partition})
            self._restore(partition)
        self.telemetry.health.set("index", True)

    def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self.telemetry.revoked(revoked)
        for partition in revoked:
            self.matchers.pop(partition.partition, None)
            log.info("partition revoked", extra={"role": ROLE, "partition": partition.partition})

    def _restore(self, partition: TopicPartition) -> None:
        """Rebuild the partition's matcher from the database and seek to the stored offset."""
        backoff = 0.5
        while True:
            try:
                started = time.perf_counter()
                matcher = build_matcher(self.settings)
                loaded = self.store.load_into(matcher, [partition.partition], matcher.fingerprint.identity)
                stored = self.store.load_offsets(self.settings.match_group, partition.topic)
                break
            except SQLAlchemyError as exc:
                log.warning("database unavailable during rebuild, retrying",
                            extra={"role": ROLE, "partition": partition.partition, "error": type(exc).__name__})
                self.telemetry.database_failed(retrying=True)
                if self.stop.wait(backoff):
                    raise
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        self.telemetry.health.set("database", True)
        if partition.partition in stored:
            self.consumer.seek(partition, stored[partition.partition])
        else:
            # Nothing stored for this partition yet: read it from the start, so that a first batch
            # whose write failed is read again rather than skipped (replays are no-ops).
            self.consumer.seek_to_beginning(partition)
        self.matchers[partition.partition] = matcher
        self.telemetry.index(partition.partition, matcher)
        log.info("index rebuilt", extra={
            "role": ROLE, "partition": partition.partition, "articles": loaded,
            "seconds": round(time.perf_counter() - started, 3), "offset": stored.get(partition.partition)})

    # -- the loop ----------------------------------------------------------------------------

    def run(self, max_idle_polls: int | None = None) -> int:
        idle = 0
        while not self.stop:
            batch = self.consumer.poll(timeout_ms=self.settings.poll_timeout_ms,
                                       max_records=self.settings.batch_max_messages)
            self.telemetry.health.tick()
            self.telemetry.health.set("kafka", kafka_connected(self.consumer))
            self.telemetry.refresh_lag(self.consumer)
            if not batch:
                self._ping_database()
                idle += 1
                if max_idle_polls is not None and idle >= max_idle_polls:
                    break
                continue
            idle = 0
            for partition, records in batch.items():
                self._handle(partition, records)
        return self.handled

    def _handle(self, partition: TopicPartition, records: list[ConsumerRecord]) -> None:
        matcher = self.matchers.get(partition.partition)
        if matcher is None:
            return  # revoked while the batch was fetched; the new owner reads it again
        items = []
        for record in records:
            try:
                items.append(decode_prepared(record.value))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("unreadable fingerprinted record",
                            extra={"role": ROLE, "partition": record.partition, "offset": record.offset})
                self.telemetry.rejected(PROCESSING_ERROR, dead_lettered=True)
                send_dead_letter(self.producer, self.settings.topic_dead_letters, record, PROCESSING_ERROR,
                                 f"{type(exc).__name__}: {exc}")
        next_offset = records[-1].offset + 1
        mark = OffsetMark(self.settings.match_group, partition.topic, partition.partition, next_offset)
        try:
            decisions = match_batch(matcher, self.store, items)
            changes = matcher.take_changes()
            started = time.perf_counter()
            self.store.write_batch(changes, matcher, [mark], partition.partition)
        except SQLAlchemyError as exc:
            log.error("database failed; rebuilding the partition from the database",
                      extra={"role": ROLE, "partition": partition.partition, "error": type(exc).__name__})
            self.telemetry.database_failed(retrying=True)
            self.telemetry.processed(partition, None)
            self.matchers.pop(partition.partition, None)
            self.stop.wait(1.0)
            self._restore(partition)
            return
        self.telemetry.stored(changes, time.perf_counter() - started)
        self.telemetry.decided(decisions)
        self.telemetry.health.set("database", True)
        self.handled += len(records)
        self._publish(changes)
        try:  # the database holds the offset that counts; Kafka's copy only feeds lag tools
            self.consumer.commit({partition: OffsetAndMetadata(next_offset, "", -1)})
        except KafkaError as exc:
            log.warning("Kafka offset commit failed; the stored offset stands",
                        extra={"role": ROLE, "partition": partition.partition, "error": type(exc).__name__})
        self.telemetry.processed(partition, records[-1])
        matcher.evict_expired()
        self.telemetry.index(partition.partition, matcher)

    def _ping_database(self) -> None:
        """When idle, check the database now and then, so readiness follows it."""
        if time.monotonic() - self._last_ping < PING_SECONDS:
            return
        self._last_ping = time.monotonic()
        try:
            self.store.ping()
            self.telemetry.health.set("database", True)
        except SQLAlchemyError:
            self.telemetry.health.set("database", False)

    def _publish(self, changes: Changes) -> None:
        for event in changes.events:
            value = {"story_id": event.story_id, "kind": event.kind, "article_id": event.article_key,
                     "reason": event.reason, "similarity": event.similarity}
            self.producer.send(self.settings.topic_story_events, key=event.story_id.encode(),
                               value=json.dumps(value).encode())
        self.producer.flush()


def run_match(settings: Settings, store: StoryStore, stop: StopFlag, max_idle_polls: int | None = None) -> int:
    telemetry = Telemetry(settings, ROLE)
    ensure_topics(settings)
    consumer = make_consumer(settings, settings.match_group)
    producer = make_producer(settings)
    worker = MatchWorker(settings, store, consumer, producer, stop, telemetry)
    consumer.subscribe([settings.topic_fingerprinted], listener=worker)
    log.info("match started", extra={"role": ROLE, "topic": settings.topic_fingerprinted})
    try:
        return worker.run(max_idle_polls)
    finally:
        log.info("match stopping", extra={"role": ROLE, "handled": worker.handled})
        producer.close(timeout=10)
        consumer.close()
        telemetry.close()
