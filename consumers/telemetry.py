"""What the runners report: turning decisions, changes and consumer positions into metrics.

Kept apart from the stages (which never see metrics) and from metrics.py (which only declares);
one place knows how a batch maps to counters, for embedded mode and both Kafka roles alike.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import TopicPartition

from consumers.matcher import EVENT_CANONICAL_CHANGED, EVENT_FOUNDED, EVENT_MERGED, Changes, Decision, Matcher
from consumers.metrics import Health, Metrics, serve
from consumers.prepare import PreparedArticle
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
        if dead_lettered:
            self.metrics.dead_letters.labels(role=self.role, reason=reason).inc()

    def prepared(self) -> None:
        self.metrics.articles.labels(role=self.role, outcome=PREPARED).inc()
        self.metrics.last_processed.labels(role=self.role).set(time.time())

    def decided(self, decision: Decision, prepared: PreparedArticle) -> None:
        m = self.metrics
        m.articles.labels(role=self.role, outcome=decision.outcome).inc()
        m.last_processed.labels(role=self.role).set(time.time())
        if decision.story_size:
            m.candidates.observe(decision.candidates)
            m.story_size.observe(decision.story_size)
            m.observe_stage("lsh_query", decision.query_seconds)
            m.observe_stage("verify", decision.verify_seconds)
        if decision.outcome == NEAR and decision.similarity is not None:
            m.similarity.observe(decision.similarity)

    def stored(self, changes: Changes, seconds: float) -> None:
        """After a batch's transaction committed."""
        m = self.metrics
        m.observe_stage("db_write", seconds)
        m.commits.labels(role=self.role).inc()
        now = datetime.now(UTC)
        for prepared, lineage in changes.new_articles:
            if prepared.scraped_at is not None:
                since_scraped = (now - prepared.scraped_at).total_seconds()
                m.end_to_end_seconds.labels(since="scraped").observe(max(0.0, since_scraped))
            if lineage.timestamp_ms is not None:
                since_produced = now.timestamp() - lineage.timestamp_ms / 1000
                m.end_to_end_seconds.labels(since="kafka").observe(max(0.0, since_produced))
        for event in changes.events:
            if event.kind == EVENT_FOUNDED:
                m.stories_created.inc()
            elif event.kind == EVENT_CANONICAL_CHANGED:
                m.canonical_changes.inc()
            elif event.kind == EVENT_MERGED and event.reason.startswith("merged into"):
                m.story_merges.inc()

    def database_failed(self, retrying: bool) -> None:
        self.metrics.db_errors.labels(role=self.role).inc()
        self.metrics.commit_failures.labels(role=self.role).inc()
        if retrying:
            self.metrics.db_retries.labels(role=self.role).inc()
        self.health.set("database", False)

    def index(self, partition: int, matcher: Matcher) -> None:
        m = self.metrics
        m.index_articles.labels(partition=str(partition)).set(len(matcher.articles))
        m.index_stories.labels(partition=str(partition)).set(len(matcher.stories))
        m.index_bytes.labels(partition=str(partition)).set(matcher.estimated_bytes())

    def rebalanced(self, change: str) -> None:
        self.metrics.rebalances.labels(role=self.role, change=change).inc()

    def lag(self, consumer: KafkaConsumer, partition: TopicPartition, last: ConsumerRecord) -> None:
        """Lag from the consumer's own view: the partition's end offset and the last record's timestamp."""
        end = consumer.highwater(partition)
        if end is None:
            return
        behind = max(0, end - (last.offset + 1))
        labels = {"role": self.role, "topic": partition.topic, "partition": str(partition.partition)}
        self.metrics.lag_messages.labels(**labels).set(behind)
        age = time.time() - last.timestamp / 1000 if behind and last.timestamp and last.timestamp > 0 else 0.0
        self.metrics.lag_seconds.labels(**labels).set(max(0.0, age))
