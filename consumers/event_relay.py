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
marked pending, /readyz fails (check ``events``), and the relay tries again every RETRY_SECONDS
(``tick``, every loop turn). Each owned partition is also looked at every SWEEP_SECONDS, so an event
that a former owner committed late is published without waiting for the partition's next batch.
Messages follow ``consumers/schemas/story_event.schema.json`` (README, "stories.events").
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
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
RETRY_SECONDS = 2.0   # a failed partition is tried again this often
SWEEP_SECONDS = 10.0  # an owned partition is looked at this often even without a batch
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
    def __init__(self, store: StoryStore, producer: KafkaProducer, topic: str, telemetry: Telemetry,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.producer = producer
        self.topic = topic
        self.telemetry = telemetry
        self._clock = clock
        self.marks: dict[int, int] = {}   # partition → highest id sent and acknowledged
        self.stored: dict[int, int] = {}  # partition → the mark as the table holds it (may lag behind marks)
        self.pending: set[int] = set()    # partitions with events to send: a failed attempt, or just assigned
        self._last_attempt: dict[int, float] = {}
        self._crash_countdown = int(os.environ.get(CRASH_BEFORE_PUBLISH_ENV) or 0)
        telemetry.health.set(HEALTH_CHECK, True)

    def committed(self, partition: int, had_events: bool) -> None:
        """After a batch of ``partition`` committed: publish what it stored (and anything still waiting)."""
        if had_events and self._crash_countdown:
            self._crash_countdown -= 1
            if not self._crash_countdown:
                log.critical("test crash between commit and publication", extra={"partition": partition})
                logging.shutdown()
                os._exit(CRASH_EXIT_CODE)
        self.publish(partition)

    def assigned(self, partition: int) -> None:
        """A partition just assigned: what a crashed owner stored but never published goes out on the next
        ``tick``, outside the rebalance callback (a slow broker must not hold up the group's join)."""
        self.marks.pop(partition, None)
        self.pending.add(partition)
        self._last_attempt.pop(partition, None)
        self._report()

    def tick(self, owned: Iterable[int]) -> None:
        """Every loop turn: retry the pending partitions every RETRY_SECONDS, and look at each owned partition
        every SWEEP_SECONDS, so that an event committed without a publish after it (a late write of a former
        owner) does not wait for the partition's next batch."""
        now = self._clock()
        for partition in sorted(set(owned) | self.pending):
            wait = RETRY_SECONDS if partition in self.pending else SWEEP_SECONDS
            if now - self._last_attempt.get(partition, float("-inf")) >= wait:
                self.publish(partition)

    def publish(self, partition: int) -> bool:
        """Send the partition's unpublished events and store the mark; False if that failed (they wait)."""
        self._last_attempt[partition] = self._clock()
        try:
            while True:
                known = self.marks.get(partition)
                mark, events = self.store.unpublished_events(partition, known, READ_ROWS)
                if known is None:
                    self.stored[partition] = mark
                self.marks[partition] = mark
                if events:
                    self._send(events)
                    self.marks[partition] = events[-1].id
                    self.telemetry.metrics.events_published.labels(role=self.telemetry.role).inc(len(events))
                if self.marks[partition] > self.stored.get(partition, 0):  # also a mark a failed write left behind
                    self.store.mark_published(partition, self.marks[partition])
                    self.stored[partition] = self.marks[partition]
                if len(events) < READ_ROWS:
                    break
        except (KafkaError, SQLAlchemyError) as exc:
            self._failed(partition, exc)
            return False
        self.pending.discard(partition)
        self._report()
        return True

    def forget(self, partition: int) -> None:
        """A revoked partition: its next owner publishes from the stored mark."""
        for state in (self.marks, self.stored, self._last_attempt):
            state.pop(partition, None)
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
