"""The outbox relay: ``story_events`` rows → ``stories.events``, at least once, in id order per match partition.

The rows are the source of truth: the matcher writes them in the same transaction as the articles,
stories and consumed offset of their batch. After each commit the match role calls ``publish`` for
the batch's partition; the relay reads that partition's rows past its mark, sends them, waits for
every acknowledgement, and only then stores the new mark (table ``event_relay``). A crash anywhere in
between sends those events again after the restart, with the same ``event_id``; none is lost.

Why per partition: one matcher writes a match partition at a time, and each of its transactions
first locks the partition's ``event_relay`` row (StoryStore.write_batch), so a partition's event ids
commit in increasing order. "id > mark" therefore never passes over a row that commits late with a
lower id, which a single global cursor over concurrent matchers would (the classic outbox gap).
A story lives in one partition, so its events keep their order; the message key is the story id,
so they stay in one partition of the topic too.

A failure (Kafka unreachable, the database away) leaves the events in the table: the partition is
marked pending, /readyz fails (check ``events``), and the relay tries again on the next batch or
idle poll. Messages follow ``consumers/schemas/story_event.schema.json`` (README, "stories.events").
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING

from kafka.errors import KafkaError
from sqlalchemy.exc import SQLAlchemyError

from consumers.storage.store import StoredEvent, StoryStore

if TYPE_CHECKING:
    from kafka import KafkaProducer

    from consumers.telemetry import Telemetry

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
HEALTH_CHECK = "events"
READ_ROWS = 5000  # events read and sent per round; a long backlog (after an outage) takes several
RETRY_SECONDS = 2.0
# Tests only: crash (exit CRASH_EXIT_CODE) right after the Nth commit with events, before publishing them.
CRASH_BEFORE_PUBLISH_ENV = "NEWSDEDUP_TEST_CRASH_BEFORE_PUBLISH"
CRASH_EXIT_CODE = 86


def event_message(event: StoredEvent) -> bytes:
    """The published form of one stored event (schema_version 1)."""
    return json.dumps({
        "schema_version": SCHEMA_VERSION,
        "event_id": event.id,
        "story_id": event.story_id,
        "kind": event.kind,
        "article_id": event.article_id,
        "reason": event.reason,
        "similarity": event.similarity,
        "occurred_at": event.occurred_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
    }, separators=(",", ":")).encode()


class EventRelay:
    def __init__(self, store: StoryStore, producer: KafkaProducer, topic: str, telemetry: Telemetry) -> None:
        self.store = store
        self.producer = producer
        self.topic = topic
        self.telemetry = telemetry
        self.marks: dict[int, int] = {}  # partition → highest id sent and acknowledged (the table may lag)
        self.pending: set[int] = set()   # partitions whose last attempt failed
        self._last_attempt = 0.0
        self._crash_countdown = int(os.environ.get(CRASH_BEFORE_PUBLISH_ENV) or 0)
        telemetry.health.set(HEALTH_CHECK, True)

    def committed(self, partition: int, had_events: bool) -> None:
        """After a batch of ``partition`` committed: publish what it stored."""
        if had_events and self._crash_countdown:
            self._crash_countdown -= 1
            if not self._crash_countdown:
                log.critical("test crash between commit and publication", extra={"partition": partition})
                logging.shutdown()
                os._exit(CRASH_EXIT_CODE)
        if had_events or partition in self.pending:
            self.publish(partition)

    def publish(self, partition: int) -> bool:
        """Send the partition's unpublished events; False if that failed (they wait in the table)."""
        self._last_attempt = time.monotonic()
        try:
            while True:
                mark, events = self.store.unpublished_events(partition, self.marks.get(partition), READ_ROWS)
                self.marks[partition] = mark
                if not events:
                    break
                self._send(events)
                self.marks[partition] = events[-1].id
                self.store.mark_published(partition, events[-1].id)
                self.telemetry.metrics.events_published.labels(role=self.telemetry.role).inc(len(events))
                if len(events) < READ_ROWS:
                    break
        except (KafkaError, SQLAlchemyError) as exc:
            self._failed(partition, exc)
            return False
        self.pending.discard(partition)
        self._report()
        return True

    def retry(self) -> None:
        """On idle polls: try the pending partitions again, at most every RETRY_SECONDS."""
        if self.pending and time.monotonic() - self._last_attempt >= RETRY_SECONDS:
            for partition in sorted(self.pending):
                self.publish(partition)

    def forget(self, partition: int) -> None:
        """A revoked partition: its next owner publishes from the stored mark."""
        self.marks.pop(partition, None)
        self.pending.discard(partition)
        self._report()

    def _send(self, events: list[StoredEvent]) -> None:
        sent = [self.producer.send(self.topic, key=event.story_id.encode(), value=event_message(event))
                for event in events]
        self.producer.flush()  # bounded by the producer's delivery_timeout_ms
        for future in sent:
            future.get(timeout=0)  # raises the error that failed it

    def _failed(self, partition: int, exc: Exception) -> None:
        self.pending.add(partition)
        self.telemetry.metrics.event_publish_failures.labels(role=self.telemetry.role).inc()
        log.warning("story events not published; they wait in the database and are sent again",
                    extra={"role": self.telemetry.role, "partition": partition, "published_up_to":
                           self.marks.get(partition), "error": type(exc).__name__})
        self._report()

    def _report(self) -> None:
        self.telemetry.metrics.event_relay_pending.labels(role=self.telemetry.role).set(len(self.pending))
        self.telemetry.health.set(HEALTH_CHECK, not self.pending)
