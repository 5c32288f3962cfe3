"""stories.events while the broker is down (issue 12): the events wait in the database, none is lost.

Deterministic: the matcher is held inside a batch transaction by a lock on its partition's event_relay row
(the first row every batch transaction locks), the broker is stopped, the transaction is let go. The batch
commits with the broker away, so its events can only wait; the test sees them stored and unpublished
(event_relay's mark below the newest event id) for the whole outage, then starts the broker and checks
that every stored event reached stories.events, in each story's order, and that the matcher stayed up.
"""

from __future__ import annotations

import time

import pytest
from kafka import KafkaProducer
from sqlalchemy import create_engine, text

from tests.faults.support import Harness, dev_lines, ids_of, poll_until

pytestmark = pytest.mark.faults
OUTAGE_SECONDS = 15
DELIVERY_TIMEOUT_MS = 4_000


def unpublished(harness: Harness) -> int:
    rows = harness.query("SELECT count(*) FROM story_events e JOIN event_relay r USING (match_partition) "
                         "WHERE e.id > r.published_id")
    return int(rows[0][0])


def test_events_wait_in_the_database_while_the_broker_is_down(harness: Harness) -> None:
    settings = harness.settings
    lines = dev_lines(400)
    first, second = lines[:200], lines[200:]
    harness.ensure_topics()
    # The test holds the matcher in a transaction, then the outage: together longer than the harness's 45 s
    # watchdog, which is not what is tested here. A short delivery timeout makes the relay's sends fail during
    # the outage (rather than wait in one flush), so its failure-and-retry path runs.
    matcher = harness.start("match", watchdog_seconds=300, kafka_delivery_timeout_ms=DELIVERY_TIMEOUT_MS)
    prepare = harness.start("prepare")
    assert poll_until(matcher.owns_match_partition, 60), matcher.tail()
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    for line in first:
        producer.send(settings.topic_raw, value=line)
    producer.flush()
    assert harness.wait_stored(len(first), timeout=90) == len(first)
    assert poll_until(lambda: unpublished(harness) == 0, 30), "the first events were not published"

    engine = create_engine(settings.database_url)
    lock = engine.connect()
    transaction = lock.begin()
    lock.execute(text("SELECT * FROM event_relay FOR UPDATE")).all()
    try:
        for line in second:
            producer.send(settings.topic_raw, value=line)
        producer.flush()
        producer.close()
        # A row lock's waiter waits on the holder's transaction id: no relation to filter on. The fault suite's
        # PostgreSQL is its own, so any waiter is the matcher.
        assert poll_until(lambda: bool(lock.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
                                       .scalar_one()), 60), "the matcher never reached its batch transaction"
        # Only the matcher goes through the outage: prepare has done its part (a kafka-python consumer can come
        # back from a broker restart without fetching again, which is the lag alert's business, not this test's).
        assert poll_until(lambda: sum(harness.end_offsets(settings.topic_fingerprinted).values()) >= len(lines), 60)
        prepare.terminate()
        harness.services.down("kafka")
    finally:
        transaction.rollback()
        lock.close()
        engine.dispose()
    down_at = time.monotonic()
    assert poll_until(lambda: unpublished(harness) > 0, 20), "no event was committed while the broker was down"
    waiting = []
    while time.monotonic() - down_at < OUTAGE_SECONDS:
        waiting.append(unpublished(harness))
        time.sleep(1)
    harness.services.up("kafka")
    up_at = time.monotonic()
    assert poll_until(lambda: unpublished(harness) == 0, 120), "the waiting events were not published"
    published_after = time.monotonic() - up_at
    assert harness.wait_stored(len(lines), timeout=120) == len(lines)
    harness.assert_alive()
    exits = harness.stop_all()
    events = harness.audit_events()
    audit = harness.audit(ids_of(lines))
    failed_sends = matcher.events("story events not published; they wait in the database and are sent again")
    harness.report(f"Kafka down {OUTAGE_SECONDS}s with events waiting", 1, len(lines), audit,
                   f"{published_after:.1f}s", equal=None,
                   notes=f"{min(waiting)}-{max(waiting)} events waited in the database during the outage; "
                         f"{len(failed_sends)} failed sends retried; "
                         f"matcher {'stayed up' if matcher.generation == 1 else 'RESTARTED'}"
                         + harness.events_note(events))
    assert min(waiting) > 0, f"events waiting during the outage: {waiting}"
    # One failed send could be the batch's own; a second is a retry while the broker was still away.
    assert len(failed_sends) >= 2, f"the relay did not retry during the outage: {len(failed_sends)} failed sends"
    assert audit.exact, audit
    events.assert_complete()
    assert matcher.generation == 1, "the matcher should wait for the broker, not die"
    assert all(code == 0 for code, _ in exits.values()), exits
