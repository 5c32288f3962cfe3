"""SIGTERM to each role while it is busy: it finishes the batch in hand, commits, and exits 0 within
GRACE_SECONDS (no hang in the Kafka client's close). A role started afterwards goes on from the commit:
prepare replays nothing (exactly one fingerprinted record per raw message), match stores the rest, and
every article is stored exactly once."""

from __future__ import annotations

import json

import pytest

from tests.faults.support import GRACE_SECONDS, Harness, dev_lines, ids_of, poll_until

pytestmark = pytest.mark.faults


def test_sigterm_prepare_while_busy(harness: Harness) -> None:
    settings = harness.settings
    lines = dev_lines(3000)
    harness.ensure_topics()
    harness.feed(lines).done()  # a backlog, so the worker is busy when the signal comes
    harness.liveness_probe()
    harness.start("match")
    preparer = harness.start("prepare")

    def produced() -> int:
        return sum(harness.end_offsets(settings.topic_fingerprinted).values())

    assert poll_until(lambda: produced() >= 300, 60), preparer.tail()
    signalled = preparer.generation
    code, took = preparer.terminate()
    at_exit = produced()
    committed = sum(offset for (topic, _), offset in harness.committed(settings.prepare_group).items()
                    if topic == settings.topic_raw)
    stopping = preparer.events("prepare stopping", generation=signalled)

    preparer.start()  # goes on from the committed offsets
    reached = harness.wait_stored(len(lines))
    harness.assert_alive()
    harness.stop_all()
    audit = harness.audit(ids_of(lines))
    replayed = produced() - len(lines)
    harness.report("SIGTERM prepare while busy", 1, len(lines), audit, f"exit {took:.1f}s", equal=None,
                   notes=f"exit code {code}; {at_exit} records out and {committed} raw offsets committed at exit; "
                         f"{replayed} replayed after restart; handled {stopping[0]['handled'] if stopping else '?'}"
                         + harness.wedge_note())

    assert code == 0 and took < GRACE_SECONDS, \
        f"prepare exited {code} after {took:.1f}s:\n{preparer.tail(generation=signalled)}"
    assert stopping, "no 'prepare stopping' line"
    assert 0 < committed < len(lines), "the signal should have come while the worker was busy"
    assert at_exit == committed, "every record sent must be covered by a committed offset, and vice versa"
    assert replayed == 0
    assert reached == len(lines) and audit.exact, audit


def test_sigterm_match_while_busy(harness: Harness) -> None:
    settings = harness.settings
    lines = dev_lines(3000)
    harness.ensure_topics()
    harness.feed(lines).done()
    harness.liveness_probe()
    harness.start("prepare")
    assert poll_until(lambda: sum(harness.end_offsets(settings.topic_fingerprinted).values()) >= 1500, 60)
    matcher = harness.start("match")
    assert poll_until(lambda: (harness.stored_count() or 0) >= 500, 60), matcher.tail()
    signalled = matcher.generation
    code, took = matcher.terminate()
    stored_at_exit = harness.stored_count() or 0
    db_offset = harness.stored_offset().get(0)
    kafka_offset = harness.committed(settings.match_group).get((settings.topic_fingerprinted, 0))
    keys_below = {json.loads(r.value)["key"] for r in harness.read_topic(settings.topic_fingerprinted)
                  if db_offset is not None and r.offset < db_offset}

    matcher.start()
    reached = harness.wait_stored(len(lines))
    harness.assert_alive()
    harness.stop_all()
    audit = harness.audit(ids_of(lines))
    harness.report("SIGTERM match while busy", 1, len(lines), audit, f"exit {took:.1f}s", equal=None,
                   notes=f"exit code {code}; {stored_at_exit} stored at exit, database offset {db_offset}, "
                         f"Kafka offset {kafka_offset}" + harness.wedge_note())

    assert code == 0 and took < GRACE_SECONDS, \
        f"match exited {code} after {took:.1f}s:\n{matcher.tail(generation=signalled)}"
    assert matcher.events("match stopping", generation=signalled)
    assert stored_at_exit < len(lines), "the signal should have come while the matcher was busy"
    assert db_offset == kafka_offset, "the last batch's offset must be committed to Kafka too"
    assert len(keys_below) == stored_at_exit, "the stored offset must cover exactly the stored articles"
    assert reached == len(lines) and audit.exact, audit


def test_sigterm_match_while_it_waits_for_the_database(harness: Harness) -> None:
    lines = dev_lines(600)
    harness.ensure_topics()
    matcher = harness.start("match")
    harness.start("prepare")
    assert poll_until(matcher.owns_match_partition, 60), matcher.tail()
    harness.feed(lines[:300]).done()
    assert poll_until(lambda: (harness.stored_count() or 0) >= 300, 60), matcher.tail()
    harness.services.down("postgres")
    try:
        harness.feed(lines[300:]).done()
        assert poll_until(lambda: bool(matcher.events("database unavailable during rebuild, retrying")), 30)
        code, took = matcher.terminate()
    finally:
        harness.services.up("postgres")
    matcher.start()
    reached = harness.wait_stored(len(lines))
    harness.assert_alive()
    harness.stop_all()
    audit = harness.audit(ids_of(lines))
    harness.report("SIGTERM match while database down", 1, len(lines), audit, f"exit {took:.1f}s", equal=None,
                   notes=f"exit code {code} ({matcher.tail(2, generation=1).splitlines()[-1][:60]}...)")
    assert reached == len(lines) and audit.exact, audit
    assert code is not None and took < GRACE_SECONDS, f"no exit within {GRACE_SECONDS}s"
    assert code == 0, f"match exited {code}:\n{matcher.tail(generation=1)}"
