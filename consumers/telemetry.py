"""What the runners report: turning decisions, changes and consumer positions into metrics.

Kept apart from the stages (which never see metrics) and from metrics.py (which only declares);
one place knows how a batch maps to counters, for embedded mode and both Kafka roles alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from datetime import UTC, datetime

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from consumers.matcher import EVENT_CANONICAL_CHANGED, EVENT_FOUNDED, EVENT_MERGED, Changes, Decision, Matcher
from consumers.metrics import Health, Metrics, serve
from consumers.settings import Settings
from consumers.stages.match import NEAR

log = logging.getLogger(__name__)
REJECTED = "rejected"
PREPARED = "prepared"


class Telemetry:
    def __init__(self, settings: Settings, role: str) -> None:
        self.role = role
        self.metrics = Metrics(role)
        self.health = Health(stall_seconds=settings.stall_seconds)
        self._last_record: dict[TopicPartition, ConsumerRecord] = {}
        self._server = None
        if settings.metrics_port:
            try:
                self._server = serve(self.metrics, self.health, settings.metrics_port, settings.metrics_host)
                log.info("metrics server started", extra={"role": role, "port": settings.metrics_port})
            except OSError as exc:  # a busy port must not stop the work; the log says why
                log.warning("metrics server not started", extra={"role": role, "port": settings.metrics_port,
                                                                 "error": str(exc)})

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def stage(self, stage: str, seconds: float) -> None:
        self.metrics.observe_stage(stage, seconds)

    def rejected(self, reason: str, dead_lettered: bool) -> None:
        self.metrics.articles.labels(role=self.role, outcome=REJECTED).inc()
        self.metrics.rejected.labels(role=self.role, reason=reason).inc()
        self.metrics.last_processed.labels(role=self.role).set(time.time())
        if dead_lettered:
            self.metrics.dead_letters.labels(role=self.role, reason=reason).inc()

    def prepared(self) -> None:
        self.metrics.articles.labels(role=self.role, outcome=PREPARED).inc()
        self.metrics.last_processed.labels(role=self.role).set(time.time())

    def decided(self, decisions: Sequence[Decision]) -> None:
        """A batch's decisions, reported once its transaction committed."""
        for decision in decisions:
            self._decided(decision)
        if decisions:
            self.metrics.last_processed.labels(role=self.role).set(time.time())

    def _decided(self, decision: Decision) -> None:
        m, role = self.metrics, self.role
        m.articles.labels(role=role, outcome=decision.outcome).inc()
        if decision.story_size:
            m.candidates.labels(role=role).observe(decision.candidates)
            m.story_size.labels(role=role).observe(decision.story_size)
            m.observe_stage("lsh_query", decision.query_seconds)
            m.observe_stage("verify", decision.verify_seconds)
        if decision.outcome == NEAR and decision.similarity is not None:
            m.similarity.labels(role=role).observe(decision.similarity)

    def stored(self, changes: Changes, seconds: float) -> None:
        """After a batch's transaction committed."""
        m, role = self.metrics, self.role
        m.db_write_seconds.labels(role=role).observe(seconds)
        m.commits.labels(role=role).inc()
        now = datetime.now(UTC)
        for prepared, lineage in changes.new_articles:
            if prepared.scraped_at is not None:
                since_scraped = (now - prepared.scraped_at).total_seconds()
                m.end_to_end_seconds.labels(role=role, since="scraped").observe(max(0.0, since_scraped))
            if lineage.timestamp_ms is not None:
                since_produced = now.timestamp() - lineage.timestamp_ms / 1000
                m.end_to_end_seconds.labels(role=role, since="kafka").observe(max(0.0, since_produced))
        for event in changes.events:
            if event.kind == EVENT_FOUNDED:
                m.stories_created.labels(role=role).inc()
            elif event.kind == EVENT_CANONICAL_CHANGED:
                m.canonical_changes.labels(role=role).inc()
            elif event.kind == EVENT_MERGED and event.reason.startswith("merged into"):
                m.story_merges.labels(role=role).inc()

    def database_failed(self, retrying: bool) -> None:
        self.metrics.db_errors.labels(role=self.role).inc()
        self.metrics.commit_failures.labels(role=self.role).inc()
        if retrying:
            self.metrics.db_retries.labels(role=self.role).inc()
        self.health.set("database", False)

    def index(self, partition: int, matcher: Matcher) -> None:
        m, labels = self.metrics, {"role": self.role, "partition": str(partition)}
        m.index_articles.labels(**labels).set(len(matcher.articles))
        m.index_stories.labels(**labels).set(len(matcher.stories))
        m.index_bytes.labels(**labels).set(matcher.estimated_bytes())

    def assigned(self, partitions: Collection[TopicPartition]) -> None:
        self.metrics.rebalances.labels(role=self.role, change="assigned").inc()
        self.metrics.assigned_partitions.labels(role=self.role).inc(len(partitions))

    def revoked(self, partitions: Collection[TopicPartition]) -> None:
        self.metrics.rebalances.labels(role=self.role, change="revoked").inc()
        self.metrics.assigned_partitions.labels(role=self.role).dec(len(partitions))
        for partition in partitions:
            self._last_record.pop(partition, None)
            self.metrics.forget_partition(partition.topic, partition.partition)

    def processed(self, partition: TopicPartition, last: ConsumerRecord | None) -> None:
        """The last record of ``partition`` now stored; None after a failed batch (the consumer seeks back)."""
        if last is None:
            self._last_record.pop(partition, None)
        else:
            self._last_record[partition] = last

    def refresh_lag(self, consumer: KafkaConsumer) -> None:
        """Lag of every owned partition from the consumer's own view (end offset, position, record times).

        Called after every poll, empty ones too, so a stalled or idle consumer reports what it sees.
        """
        for partition in consumer.assignment():
            end = consumer.highwater(partition)
            if end is None:
                continue  # no fetch answered yet
            last = self._last_record.get(partition)
            try:
                position = last.offset + 1 if last is not None else consumer.position(partition)
            except KafkaError:  # position() asks the broker when it has to: with none up, keep the last figure
                continue
            behind = max(0, end - position)
            labels = {"role": self.role, "topic": partition.topic, "partition": str(partition.partition)}
            self.metrics.lag_messages.labels(**labels).set(behind)
            stamp = last.timestamp / 1000 if last is not None and last.timestamp and last.timestamp > 0 else None
            self.metrics.lag_seconds.labels(**labels).set(max(0.0, time.time() - stamp) if behind and stamp else 0.0)
