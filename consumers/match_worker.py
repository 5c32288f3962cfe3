"""The match role: ``articles.fingerprinted`` → stories in the database → ``stories.events``.

Stateful: one active matcher per partition of the fingerprinted topic (consumer group
``newsdedup-match``); other members of the group are standbys that take over on a rebalance.
On assignment the matcher rebuilds its index from the database and seeks to the offset stored
there, so the database, not Kafka, says where to resume.

Per batch of one partition:
  1. send the dead letters of unusable records and wait for them (a crash sends them again);
  2. match every record in memory;
  3. write articles, stories, events and the next offset in one database transaction;
  4. the outbox relay publishes the partition's stored events (consumers/event_relay.py), and the
     offset is committed to Kafka too, so lag tools see progress.
A crash before 3 replays the batch; a crash after it resumes from the stored offset, and the relay
sends what it had not confirmed again. No event or dead letter is lost.
If step 2 fails the in-memory state is thrown away and rebuilt from the database. A lost
connection is an outage: the batch is read again after a pause. An error that says PostgreSQL
refuses the data itself (a DataError or IntegrityError) is permanent: the batch is read again one
record at a time, and a record refused on its own goes to the dead-letter topic, so one bad
record never stalls its partition.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Collection

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from consumers.embedded import build_matcher
from consumers.event_relay import EventRelay
from consumers.fetch_guard import FetchGuard
from consumers.growth import export_growth
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
)
from consumers.lifecycle import StopFlag, Watchdog
from consumers.matcher import Changes, Matcher
from consumers.matching import match_batch
from consumers.prepare import decode_prepared, refingerprint
from consumers.settings import Settings
from consumers.storage.store import OffsetMark, StoryStore
from consumers.telemetry import Telemetry

log = logging.getLogger(__name__)
ROLE = "match"
MAX_BACKOFF_SECONDS = 10.0  # the longest wait for the database: work resumes soon after it is back
PING_SECONDS = 2.0
KAFKA_COMMIT_TIMEOUT_MS = 5_000  # Kafka's copy of the offset only feeds lag tools: never worth a wait
# Errors about the data, not the connection: retrying the same batch cannot help.
REFUSED_BY_DATABASE = (DataError, IntegrityError)
DEAD_LETTERS_CHECK = "dead_letters"  # /readyz: false while dead letters cannot be delivered


class MatchWorker(ConsumerRebalanceListener):
    def __init__(self, settings: Settings, store: StoryStore, consumer: KafkaConsumer,
                 producer: KafkaProducer, stop: StopFlag, telemetry: Telemetry) -> None:
        self.settings = settings
        self.store = store
        self.consumer = consumer
        self.producer = producer
        self.stop = stop
        self.telemetry = telemetry
        self.relay = EventRelay(store, producer, settings.topic_story_events, telemetry)
        self.matchers: dict[int, Matcher] = {}
        self.guard = FetchGuard(consumer, telemetry, settings.undecodable_hold_seconds)
        # partition → end of a batch the database refused: records before it are stored one by one
        self.isolating: dict[int, int] = {}
        self.handled = 0
        self._last_ping = 0.0
        telemetry.health.checks.update(kafka=False, database=True, index=True, dead_letters=True)

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
            self.isolating.pop(partition.partition, None)
            self.relay.forget(partition.partition)
            log.info("partition revoked", extra={"role": ROLE, "partition": partition.partition})

    def _restore(self, partition: TopicPartition) -> None:
        """Rebuild the partition's matcher from the database and seek to the stored offset.

        Retries while the database is away; a stop request ends the wait and leaves the partition
        without a matcher (its records are not handled, so nothing is stored or committed).
        """
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
                    log.info("stop requested while waiting for the database",
                             extra={"role": ROLE, "partition": partition.partition})
                    return
                self.telemetry.health.tick()  # waiting on purpose: /readyz says why, the loop is not stuck
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        self.telemetry.health.set("database", True)
        if partition.partition in stored:
            self.consumer.seek(partition, stored[partition.partition])
        else:
            # Nothing stored for this partition yet: read it from the start, so that a first batch
            # whose write failed is read again rather than skipped (replays are no-ops).
            self.consumer.seek_to_beginning(partition)
        self.matchers[partition.partition] = matcher
        self.relay.assigned(partition.partition)  # what a crashed owner stored but had not published
        self.telemetry.index(partition.partition, matcher)
        log.info("index rebuilt", extra={
            "role": ROLE, "partition": partition.partition, "articles": loaded,
            "seconds": round(time.perf_counter() - started, 3), "offset": stored.get(partition.partition)})

    # -- the loop ----------------------------------------------------------------------------

    def run(self, max_idle_polls: int | None = None) -> int:
        idle = 0
        while not self.stop:
            batch = poll(self.consumer, self.settings, self.stop, self.guard)
            self.guard.check()
            if not joining_group(self.consumer):  # a join that never ends is no progress (see joining_group)
                self.telemetry.health.tick()
            self.telemetry.health.set("kafka", kafka_connected(self.consumer))
            self.telemetry.refresh_lag(self.consumer)
            self.relay.tick(self.matchers)
            if not batch:
                self._ping_database()
                idle += 1
                if max_idle_polls is not None and idle >= max_idle_polls:
                    self.guard.check(idle_exit=True)
                    break
                continue
            idle = 0
            for partition, records in batch.items():
                self._handle(partition, records)
        return self.handled

    def _handle(self, partition: TopicPartition, records: list[ConsumerRecord]) -> None:
        isolate_until = self.isolating.get(partition.partition)
        if isolate_until is None or records[0].offset >= isolate_until:
            self.isolating.pop(partition.partition, None)
            self._store(partition, records)
            return
        for record in records:  # a batch the database refused: one record per transaction
            if not self._store(partition, [record], isolated=record.offset < isolate_until):
                return  # restored: the consumer reads on from the stored offset

    def _store(self, partition: TopicPartition, records: list[ConsumerRecord], isolated: bool = False) -> bool:
        """Match and store ``records`` of one partition; False if that failed and the partition was restored."""
        matcher = self.matchers.get(partition.partition)
        if matcher is None:
            return False  # revoked while the batch was fetched, or stopping: the new owner reads it again
        items, letters = [], []
        recomputed = 0
        for record in records:
            try:
                prepared, lineage = decode_prepared(record.value)
                if prepared.fingerprint_identity != matcher.fingerprint.identity:
                    prepared = refingerprint(prepared, matcher.fingerprint)
                    recomputed += 1
                items.append((prepared, lineage))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("unusable fingerprinted record",
                            extra={"role": ROLE, "partition": record.partition, "offset": record.offset})
                letters.append(self._dead_letter(record, f"{type(exc).__name__}: {exc}"))
        if letters and not self._deliver_before_commit(partition, records, letters):
            return False
        if recomputed:
            log.warning("records of another fingerprint identity fingerprinted again from their text "
                        "(prepare and match run different versions or settings)",
                        extra={"role": ROLE, "partition": partition.partition, "records": recomputed})
        next_offset = records[-1].offset + 1
        mark = OffsetMark(self.settings.match_group, partition.topic, partition.partition, next_offset)
        try:
            decisions = match_batch(matcher, self.store, items)
            changes = matcher.take_changes()
            started = time.perf_counter()
            self.store.write_batch(changes, matcher, [mark], partition.partition)
        except SQLAlchemyError as exc:
            self._failed(partition, records, exc, isolated)
            return False
        self.telemetry.stored(changes, time.perf_counter() - started)
        self.telemetry.decided(decisions)
        self.telemetry.health.set("database", True)
        self.handled += len(records)
        self.relay.committed(partition.partition, bool(changes.events))
        try:  # the database holds the offset that counts; Kafka's copy only feeds lag tools
            # Bounded: kafka-python's commit otherwise waits out a broker outage (up to request_timeout_ms, 5
            # minutes), and the loop, with the relay's retries, would wait with it.
            self.consumer.commit({partition: OffsetAndMetadata(next_offset, "", -1)},
                                 timeout_ms=KAFKA_COMMIT_TIMEOUT_MS)
        except KafkaError as exc:
            log.warning("Kafka offset commit failed; the stored offset stands",
                        extra={"role": ROLE, "partition": partition.partition, "error": type(exc).__name__})
        self.telemetry.processed(partition, records[-1])
        matcher.evict_expired()
        self.telemetry.index(partition.partition, matcher)
        return True

    def _failed(self, partition: TopicPartition, records: list[ConsumerRecord], exc: SQLAlchemyError,
                isolated: bool) -> None:
        """A failed write: throw the partition's state away, decide what to read again, rebuild."""
        self.telemetry.processed(partition, None)
        matcher = self.matchers.pop(partition.partition)
        extra = {"role": ROLE, "partition": partition.partition, "offset": records[0].offset,
                 "error": type(exc).__name__}
        if not isinstance(exc, REFUSED_BY_DATABASE):
            log.error("database failed; rebuilding the partition from the database", extra=extra)
            self.telemetry.database_failed(retrying=True)
            self.stop.wait(1.0)
        elif not isolated:
            log.warning("database refused the batch; storing its records one by one", extra=extra)
            self.isolating[partition.partition] = records[-1].offset + 1
        else:
            # This record alone is refused (the same error again after a rebuild from the database,
            # so not a race with another writer): dead-letter it and store the offset past it.
            log.error("database refused the record; dead-lettering it", extra=extra)
            detail = f"database refused it: {type(exc.orig or exc).__name__}"
            self._deliver_dead_letters([self._dead_letter(records[0], detail)])
            mark = OffsetMark(self.settings.match_group, partition.topic, partition.partition, records[0].offset + 1)
            with contextlib.suppress(SQLAlchemyError):  # if not stored, the record is read and refused again
                self.store.write_batch(Changes(), matcher, [mark], partition.partition)
        self._restore(partition)

    def _dead_letter(self, record: ConsumerRecord, detail: str) -> Outgoing:
        return dead_letter(self.producer, self.settings.topic_dead_letters, record, PROCESSING_ERROR, detail)

    def _ping_database(self) -> None:
        """When idle, check the database now and then, so readiness follows it."""
        if time.monotonic() - self._last_ping < PING_SECONDS:
            return
        self._last_ping = time.monotonic()
        try:
            self.store.ping()
            self.telemetry.health.set("database", True)
            export_growth(self.store, self.telemetry.metrics, self.settings.database_disk_bytes)  # every minute
        except SQLAlchemyError:
            self.telemetry.health.set("database", False)

    def _deliver_before_commit(self, partition: TopicPartition, records: list[ConsumerRecord],
                               letters: list[Outgoing]) -> bool:
        """Wait for the batch's dead letters before its offset is stored: if that fails, read the batch again."""
        try:
            self._deliver_dead_letters(letters)
            return True
        except KafkaError as exc:
            self.telemetry.health.set(DEAD_LETTERS_CHECK, False)  # a partition stalled on them must be loud
            log.warning("dead letters not delivered; the batch is read again", extra={
                "role": ROLE, "partition": partition.partition, "offset": records[0].offset,
                "error": type(exc).__name__})
            self.consumer.seek(partition, records[0].offset)
            self.stop.wait(1.0)
            return False

    def _deliver_dead_letters(self, letters: list[Outgoing]) -> None:
        """Send and wait; counted once delivered (a batch read again after a failure sends them again)."""
        deliver(self.producer, self.settings.topic_dead_letters, letters)
        for _ in letters:
            self.telemetry.rejected(PROCESSING_ERROR, dead_lettered=True)
        self.telemetry.health.set(DEAD_LETTERS_CHECK, True)


def run_match(settings: Settings, store: StoryStore, stop: StopFlag, max_idle_polls: int | None = None) -> int:
    telemetry = Telemetry(settings, ROLE)
    watchdog = Watchdog(telemetry.health, settings.watchdog_seconds).start()  # also bounds the close below
    ensure_topics(settings)
    consumer = make_consumer(settings, settings.match_group)
    producer = make_producer(settings)
    worker = MatchWorker(settings, store, consumer, producer, stop, telemetry)
    subscribe_when_known(consumer, settings.topic_fingerprinted, worker, stop)
    log.info("match started", extra={"role": ROLE, "topic": settings.topic_fingerprinted})
    try:
        return worker.run(max_idle_polls)
    finally:
        log.info("match stopping", extra={"role": ROLE, "handled": worker.handled})
        producer.close(timeout=10)
        consumer.close()
        telemetry.close()
        watchdog.stop()
